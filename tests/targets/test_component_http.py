"""The Python samples served by the real local target over real HTTP: the route table, the
server, logs and request records all see a wasi:http component like any other guest."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import MappingProxyType

import aiohttp
import pytest

from devenv.config import LocalSettings, Settings
from devenv.manifest import load_app
from devenv.model import BuiltApp, LogStream
from devenv.store.store import Store
from devenv.targets.local.target import LocalTarget
from tests.targets.component_builds import CACHE_ROOT, SAMPLES, sample_wasm

pytestmark = pytest.mark.slow


def built(name: str) -> BuiltApp:
    spec = load_app(SAMPLES / name / "spin.toml")
    return BuiltApp(
        spec=spec,
        digest=f"sha256:{sample_wasm(name).stem}",
        wasm=MappingProxyType({name: sample_wasm(name)}),
        built_at=time.time(),
    )


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[LocalTarget]:
    # The compile cache is shared with the other component tests: compiling an 18 MB component
    # takes tens of seconds, loading it a few milliseconds.
    # In-process (guest_processes=0): these tests read the store right after a response, and
    # serving processes report a few milliseconds later (tests/targets/test_local_components.py
    # covers components in serving processes).
    local = LocalSettings(
        host="127.0.0.1", base_port=0, request_timeout_s=120, cache_dir=CACHE_ROOT, guest_processes=0
    )
    t = LocalTarget(Store(), Settings(root=tmp_path, local=local), app_ports={"hello-py": 0, "echo-py": 0})
    await t.start()
    yield t
    await t.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        yield session


def url(target: LocalTarget, app: str, path: str) -> str:
    return f"http://127.0.0.1:{target.bound_port(app)}{path}"


async def test_hello_py_serves_on_the_local_target(target: LocalTarget, http: aiohttp.ClientSession) -> None:
    result = await target.deploy(built("hello-py"))
    assert not any("not yet supported" in n for n in result.notes), result.notes
    async with http.get(url(target, "hello-py", "/hello-py/world?q=1")) as r:
        assert r.status == 200
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert await r.text() == "Hello from hello-py at /hello-py/world?q=1\n"


async def test_echo_py_over_http(target: LocalTarget, http: aiohttp.ClientSession) -> None:
    await target.deploy(built("echo-py"))
    body = bytes(range(256)) * 40
    async with http.post(url(target, "echo-py", "/echo-py/echo"), data=body, headers={"X-Who": "test"}) as r:
        assert r.status == 200
        assert r.headers["x-echo-who"] == "test"
        assert await r.read() == body
    async with http.get(url(target, "echo-py", "/echo-py/status/418")) as r:
        assert r.status == 418
    async with http.get(url(target, "echo-py", "/echo-py/print")) as r:
        assert await r.text() == "printed\n"
    lines = target.store.logs.since(0).lines
    stdout = [line for line in lines if line.stream is LogStream.STDOUT]
    assert [line.text for line in stdout] == ["hello on stdout from echo-py"]
    assert stdout[0].component == "echo-py"


async def test_a_trap_is_a_500_and_the_server_keeps_serving(
    target: LocalTarget, http: aiohttp.ClientSession
) -> None:
    await target.deploy(built("echo-py"))
    async with http.get(url(target, "echo-py", "/echo-py/trap")) as r:
        assert r.status == 500
    async with http.get(url(target, "echo-py", "/echo-py/kv")) as r:
        assert r.status == 500
    async with http.get(url(target, "echo-py", "/echo-py/status/200")) as r:
        assert r.status == 200
    texts = [line.text for line in target.store.logs.since(0).lines]
    assert any("key-value store `default` opened but not granted" in t for t in texts), texts


async def test_a_10_mb_response_over_http(target: LocalTarget, http: aiohttp.ClientSession) -> None:
    await target.deploy(built("echo-py"))
    size = 10 * 1024 * 1024
    async with http.get(url(target, "echo-py", f"/echo-py/big?size={size}")) as r:
        assert r.status == 200
        assert await r.read() == (bytes(range(256)) * (size // 256 + 1))[:size]


async def test_a_10_mb_request_over_http(target: LocalTarget, http: aiohttp.ClientSession) -> None:
    await target.deploy(built("echo-py"))
    size = 10 * 1024 * 1024
    data = (bytes(range(253)) * (size // 253 + 1))[:size]
    async with http.post(url(target, "echo-py", "/echo-py/echo"), data=data) as r:
        assert r.status == 200
        assert await r.read() == data


async def test_granted_and_denied_files_over_http(target: LocalTarget, http: aiohttp.ClientSession) -> None:
    await target.deploy(built("echo-py"))
    async with http.get(url(target, "echo-py", "/echo-py/file")) as r:
        assert r.status == 200
        assert await r.read() == (SAMPLES / "echo-py" / "static" / "hello.txt").read_bytes()
    async with http.get(url(target, "echo-py", "/echo-py/denied-file")) as r:
        assert r.status == 403
    texts = [line.text for line in target.store.logs.since(0).lines]
    assert any("/secret/key.txt" in t and "not granted by `files`" in t for t in texts), texts


async def test_close_ends_a_component_stuck_in_a_loop(
    target: LocalTarget, http: aiohttp.ClientSession
) -> None:
    import asyncio
    import contextlib
    import threading

    await target.deploy(built("echo-py"))
    assert target._server is not None
    version = target._server._versions["echo-py"]

    async def get_loop() -> None:
        async with http.get(url(target, "echo-py", "/echo-py/loop")) as r:
            await r.read()

    stuck = asyncio.create_task(get_loop())  # runs until its 120 s deadline unless interrupted
    deadline = time.monotonic() + 60
    while version.in_flight == 0:
        assert time.monotonic() < deadline, "the loop request never started"
        await asyncio.sleep(0.01)
    await target.close()
    while any(t.name.startswith("wasmdev-guest") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a guest thread still runs the loop after close()"
        await asyncio.sleep(0.05)
    with contextlib.suppress(aiohttp.ClientError):
        await stuck
