"""wasi:http components on the local target: served by the serving processes (each loads the
compiled component from the shared compile cache), and calling their own app without deadlock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import MappingProxyType
from urllib.parse import quote

import aiohttp
import pytest

from devenv.config import LocalSettings, Settings
from devenv.manifest import load_app
from devenv.model import BuiltApp
from devenv.store.store import Store
from devenv.targets.local.target import LocalTarget
from tests.targets.component_builds import CACHE_ROOT, SAMPLES, sample_wasm
from tests.targets.local_helpers import requests_reported

pytestmark = pytest.mark.slow


def built(name: str) -> BuiltApp:
    spec = load_app(SAMPLES / name / "spin.toml")
    return BuiltApp(
        spec=spec,
        digest=f"sha256:{sample_wasm(name).stem}",
        wasm=MappingProxyType({name: sample_wasm(name)}),
        built_at=time.time(),
    )


def settings(tmp_path: Path, guest_processes: int) -> Settings:
    local = LocalSettings(
        host="127.0.0.1",
        base_port=0,
        request_timeout_s=60,
        cache_dir=CACHE_ROOT,
        guest_processes=guest_processes,
    )
    return Settings(root=tmp_path, local=local)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(force_close=True)  # each request may land on another process
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as s:
        yield s


async def test_a_component_app_is_served_by_the_serving_processes(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    target = LocalTarget(Store(), settings(tmp_path, 2), app_ports={"hello-py": 0})
    try:
        result = await target.deploy(built("hello-py"))
        assert not any("wasmdev's own process" in n for n in result.notes), result.notes
        assert target._processes is not None and target._processes.serves("hello-py")
        assert target._server is not None and "hello-py" not in target._server._versions  # not in-process
        url = f"http://127.0.0.1:{target.bound_port('hello-py')}/hello-py/world"
        for _ in range(6):
            async with http.get(url) as r:
                assert r.status == 200
                assert await r.text() == "Hello from hello-py at /hello-py/world\n"
        await requests_reported(target, 6, app="hello-py")
        ids = {r.request_id.split("-")[0] for r in target.store.metrics.requests("hello-py")}
        assert ids <= {"0", "1"}  # request ids carry the serving process's index
    finally:
        await target.close()


@pytest.mark.parametrize("guest_processes", [0, 2], ids=["guest-threads", "guest-processes"])
async def test_a_component_calling_its_own_app_does_not_deadlock(
    tmp_path: Path, http: aiohttp.ClientSession, guest_processes: int
) -> None:
    # One guest thread per server (plus the spare one no single path may take): every caller
    # holds one while it waits on its callee, which needs one too.
    target = LocalTarget(Store(), settings(tmp_path, guest_processes), app_ports={"echo-py": 0}, workers=1)
    try:
        await target.deploy(built("echo-py"))
        port = target.bound_port("echo-py")
        # A call into the same path, which calls another path: the worst case, as one path
        # may take every thread but the spare one.
        inner = f"http://127.0.0.1:{port}/echo-py/status/204"
        own = f"http://127.0.0.1:{port}/echo-py/outbound?url={quote(inner, safe='')}"
        url = f"http://127.0.0.1:{port}/echo-py/outbound?url={quote(own, safe='')}"

        async def call() -> tuple[int, str]:
            async with http.get(url) as r:
                return r.status, await r.text()

        replies = await asyncio.gather(*(call() for _ in range(6)))
        assert all(status == 200 for status, _ in replies), replies
        async with http.get(f"http://127.0.0.1:{port}/echo-py/status/200") as r:
            assert r.status == 200
        # A deadlocked caller would have been a 500 at its deadline ("timed out").
        await requests_reported(target, 19, app="echo-py")
        assert all(r.status in (200, 204) for r in target.store.metrics.requests("echo-py"))
    finally:
        await target.close()
