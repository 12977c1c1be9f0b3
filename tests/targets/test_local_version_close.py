"""A retired version closes what its runners hold open: Spin's store connections go when its last
request finished, not whenever the garbage collector finds them (every deploy opens new ones, so
a day of saves would otherwise pile up descriptors of .spin/sqlite_key_value.db)."""

from __future__ import annotations

import gc
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import MappingProxyType

import aiohttp
import pytest

from devenv.config import LocalSettings, Settings
from devenv.manifest import load_app
from devenv.model import BuiltApp
from devenv.store.store import Store
from devenv.targets.local.target import LocalTarget
from tests.targets.component_builds import CACHE_ROOT, SAMPLES, sample_wasm

pytestmark = pytest.mark.slow

NAME = "kv-counter-py"


def open_fds(path: Path, pid: int | str = "self") -> int:
    """How many descriptors process ``pid`` has open on ``path`` (a connection holds one)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                count += 1
        except OSError:  # closed between listing and reading
            pass
    return count


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(force_close=True)  # each request may land on another process
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as s:
        yield s


@pytest.mark.parametrize("guest_processes", [0, 2], ids=["in-process", "serving-processes"])
async def test_a_redeploy_closes_the_retired_versions_store_connection(
    tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, guest_processes: int
) -> None:
    monkeypatch.setenv("SPIN_VARIABLE_GREETING", "Hi")
    folder = tmp_path / NAME
    shutil.copytree(SAMPLES / NAME, folder, ignore=shutil.ignore_patterns("target", ".spin", ".env"))
    (folder / ".env").write_text("SPIN_VARIABLE_ADMIN_TOKEN=t\n")
    wasm = sample_wasm(NAME)
    local = LocalSettings(
        host="127.0.0.1", base_port=0, request_timeout_s=60, cache_dir=CACHE_ROOT, guest_processes=guest_processes
    )
    target = LocalTarget(Store(), Settings(root=tmp_path, local=local), app_ports={NAME: 0})
    db = (folder / ".spin" / "sqlite_key_value.db").resolve()

    def build() -> BuiltApp:
        spec = load_app(folder / "spin.toml")
        return BuiltApp(spec=spec, digest=f"sha256:{wasm.stem}", wasm=MappingProxyType({NAME: wasm}), built_at=time.time())

    try:
        gc.disable()  # the connection must be closed by the retirement, not found by the collector
        result = await target.deploy(build())
        url = result.urls[0].replace("/...", "/")
        visitor = 0
        for _ in range(3):
            for _ in range(4):  # with processes, likely reaching both
                visitor += 1
                async with http.get(url) as r:
                    assert (r.status, await r.text()) == (200, f"Hi, visitor number {visitor}\n")
            if guest_processes:
                assert target._processes is not None
                pids = target._processes.pids
                # At most the serving version's one connection in each process (one that got no
                # request has none); none in wasmdev's, whose check build never served.
                assert all(open_fds(db, pid) <= 1 for pid in pids), [open_fds(db, pid) for pid in pids]
                assert open_fds(db) == 0
            else:
                assert open_fds(db) == 1  # the serving version's one connection; retired ones closed
            await target.deploy(build())
    finally:
        gc.enable()
        await target.close()
