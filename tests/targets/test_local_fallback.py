"""Apps moving into wasmdev's own process when the serving processes are gone for good: the move
takes the app's deploy lock (a deploy never interleaves with it, so an older build never replaces
a newer one), uses the host API settings the build was checked with, says a failure in the app's
log, and is cancelled by close()."""

from __future__ import annotations

import os
import shutil
import signal
import stat
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
from devenv.targets.local import serving_process
from devenv.targets.local.backend import InProcessBackend
from devenv.targets.local.target import LocalTarget
from tests.targets.component_builds import CACHE_ROOT, SAMPLES, sample_wasm
from tests.targets.local_helpers import Comp, hello_wasm, local_settings, make_app, wait_until

FALLBACK_NOTE = "serving this app from wasmdev's own process"


def system_lines(target: LocalTarget) -> list[str]:
    return [line.text for line in target.store.logs.since(0).lines if line.stream is LogStream.SYSTEM]


def kill_processes_for_good(target: LocalTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both serving processes die and no replacement can start (a broken Python)."""
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ImportError: wasmtime is broken here' >&2\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(serving_process.sys, "executable", str(broken))
    assert target._processes is not None
    for pid in target._processes.pids:
        os.kill(pid, signal.SIGKILL)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        async with session.get(url) as r:
            return r.status, await r.text()


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[LocalTarget]:
    t = LocalTarget(Store(), local_settings(tmp_path, guest_processes=2), app_ports={"demo": 0})
    await t.start()
    yield t
    await t.close()


async def test_the_move_runs_under_the_apps_deploy_lock_and_a_newer_deploy_wins(
    target: LocalTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "app"
    await target.deploy(make_app(root, [Comp(wasm=hello_wasm("v1"))], digest="sha256:1"))
    stager = target._stager
    assert stager is not None
    lock_held: list[bool] = []
    real_build = stager.build

    def build(*args: object, **kwargs: object) -> object:
        lock_held.append(target._deploy_locks["demo"].locked())
        return real_build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stager, "build", build)
    kill_processes_for_good(target, tmp_path, monkeypatch)
    await wait_until(lambda: any(FALLBACK_NOTE in text for text in system_lines(target)), timeout=30)
    # A save lands while the app is moving in: whichever goes first, the newer build serves.
    await target.deploy(make_app(root, [Comp(wasm=hello_wasm("v2"))], digest="sha256:2"))
    await wait_until(lambda: not target._fallbacks, timeout=30)
    status, text = await get(f"http://127.0.0.1:{target.bound_port('demo')}/hello/x")
    assert status == 200 and "Hello from hello-wat v2!" in text, text
    assert lock_held and all(lock_held), lock_held  # every build, the move's included, held the lock


async def test_a_failed_move_is_said_in_the_apps_log(
    target: LocalTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await target.deploy(make_app(tmp_path / "app"))

    async def broken_serve(*_: object) -> None:
        raise RuntimeError("the port could not be taken over")

    monkeypatch.setattr(InProcessBackend, "serve", broken_serve)
    kill_processes_for_good(target, tmp_path, monkeypatch)
    expected = "could not serve this app from wasmdev's own process: the port could not be taken over"
    await wait_until(lambda: any(expected in text for text in system_lines(target)), timeout=30)
    assert not target._fallbacks


async def test_close_cancels_a_move_still_waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=2), app_ports={"demo": 0})
    await target.start()
    await target.deploy(make_app(tmp_path / "app"))
    lock = target._deploy_locks["demo"]
    await lock.acquire()  # a deploy of the app in progress
    try:
        kill_processes_for_good(target, tmp_path, monkeypatch)
        await wait_until(lambda: bool(target._fallbacks), timeout=30)
        (moving,) = target._fallbacks
        await target.close()
        assert moving.cancelled()
        assert not target._fallbacks
    finally:
        lock.release()


NAME = "kv-counter-py"


async def test_the_move_keeps_the_host_api_settings_the_build_was_checked_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPIN_VARIABLE_GREETING", "Hi")
    folder = tmp_path / NAME
    shutil.copytree(SAMPLES / NAME, folder, ignore=shutil.ignore_patterns("target", ".spin", ".env"))
    (folder / ".env").write_text("SPIN_VARIABLE_ADMIN_TOKEN=t\n")
    runtime_config = tmp_path / "runtime-config.toml"
    runtime_config.write_text("# nothing beyond Spin's defaults\n")
    local = LocalSettings(
        host="127.0.0.1",
        base_port=0,
        request_timeout_s=60,
        cache_dir=CACHE_ROOT,
        guest_processes=2,
        runtime_config=runtime_config,
    )
    target = LocalTarget(Store(), Settings(root=tmp_path, local=local), app_ports={NAME: 0})
    wasm = sample_wasm(NAME)
    built = BuiltApp(
        spec=load_app(folder / "spin.toml"),
        digest=f"sha256:{wasm.stem}",
        wasm=MappingProxyType({NAME: wasm}),
        built_at=time.time(),
    )
    try:
        result = await target.deploy(built)
        url = result.urls[0].replace("/...", "/")
        assert await get(url) == (200, "Hi, visitor number 1\n")
        # Edited since (half-saved, say): it applies on the next deploy, not to the build that
        # was checked with the old one and now moves in.
        runtime_config.write_text("[key_value_store.default\n")
        kill_processes_for_good(target, tmp_path, monkeypatch)
        server = target._server
        assert server is not None
        await wait_until(lambda: server.serves(NAME), timeout=60)
        assert await get(url) == (200, "Hi, visitor number 2\n")  # the same store, still granted
    finally:
        await target.close()
