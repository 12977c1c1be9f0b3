"""Serving processes: WAGI apps served by worker processes sharing each app's port.

What must hold whichever process accepts a connection: a deploy returns only once every process
serves the new build; a broken build leaves the old one serving everywhere; a killed process is
replaced and the app keeps answering; removing an app closes its port everywhere; closing the
target leaves no process behind; and when processes cannot start, the app is still served
(in-process) and the deploy says why. Fresh connections are used throughout, so requests land on
more than one process rather than riding one keep-alive connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from devenv.errors import DeployError
from devenv.model import LogStream
from devenv.store.store import Store
from devenv.targets.local import guest_procs, serving_process
from devenv.targets.local.target import LocalTarget
from devenv.targets.local.wagi import WagiRunner
from tests.targets.local_helpers import (
    Comp,
    hello_wasm,
    local_settings,
    make_app,
    requests_reported,
    wait_until,
)

REQUESTS = 24


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[LocalTarget]:
    t = LocalTarget(Store(), local_settings(tmp_path, guest_processes=2), app_ports={"demo": 0})
    await t.start()
    yield t
    await t.close()


def processes(target: LocalTarget) -> guest_procs.GuestProcesses:
    assert target._processes is not None
    return target._processes


async def fresh_gets(target: LocalTarget, path: str = "/hello/x", count: int = REQUESTS) -> list[tuple[int, str]]:
    """``count`` GETs, each on a new connection (the kernel picks the accepting process)."""
    url = f"http://127.0.0.1:{target.bound_port('demo')}{path}"
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=30)  # a port nobody serves fails here, not in 5 minutes
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> tuple[int, str]:
            async with session.get(url) as r:
                return r.status, await r.text()

        return list(await asyncio.gather(*(one() for _ in range(count))))


def greeting(version: str) -> str:
    return f"Hello from hello-wat {version}!"


@contextlib.contextmanager
def only(target: LocalTarget, pid: int) -> Iterator[None]:
    """Let only process ``pid`` accept: the others are stopped (SIGSTOP), so every new
    connection waits in the shared accept queue for ``pid``. Deterministic, unlike the kernel's
    spread of connections over the processes."""
    others = [p for p in processes(target).pids if p != pid]
    for other in others:
        os.kill(other, signal.SIGSTOP)
    try:
        # kill() returns before the stop takes effect: a process still running could accept a
        # connection and then stop holding it. Wait until every thread of each is stopped.
        deadline = time.monotonic() + 10
        while not all(_stopped(other) for other in others):
            assert time.monotonic() < deadline, "SIGSTOP did not take effect"
            time.sleep(0.005)
        yield
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


def _stopped(pid: int) -> bool:
    tasks = Path(f"/proc/{pid}/task")
    states = [(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks.iterdir()]
    return all(state in ("T", "t") for state in states)


async def each_process_serves(target: LocalTarget, version: str) -> None:
    for pid in processes(target).pids:
        with only(target, pid):
            replies = await fresh_gets(target, count=4)
        assert all(status == 200 and greeting(version) in text for status, text in replies), (pid, replies)


async def test_wagi_requests_are_served_by_the_serving_processes(
    target: LocalTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In this process a WAGI guest can no longer run: every 200 below came from another process.
    def refuse(*_: object) -> None:
        raise AssertionError("a WAGI guest ran in wasmdev's own process")

    monkeypatch.setattr(WagiRunner, "handle", refuse)
    await target.deploy(make_app(tmp_path / "app"))
    replies = await fresh_gets(target)
    assert all(status == 200 and greeting("v1") in text for status, text in replies), replies
    pids = processes(target).pids
    assert len(pids) == 2 and os.getpid() not in pids
    # Their requests, guest output and usage are reported here, tagged as in-process ones are.
    await requests_reported(target, REQUESTS)
    records = target.store.metrics.requests("demo")
    assert {(r.status, r.component) for r in records} == {(200, "hello")}
    lines = target.store.logs.since(0).lines
    stderr = [line for line in lines if line.stream is LogStream.STDERR]
    assert len(stderr) == REQUESTS and {line.request_id for line in stderr} == {r.request_id for r in records}
    usage = target.usage("demo")
    assert usage.requests_total == REQUESTS and usage.cpu_seconds_total > 0


async def test_a_deploy_returns_once_every_process_serves_the_new_build(
    target: LocalTarget, tmp_path: Path
) -> None:
    root = tmp_path / "app"
    await target.deploy(make_app(root, [Comp(wasm=hello_wasm("v1"))], digest="sha256:1"))
    for version in ("v2", "v3", "v4"):
        await target.deploy(make_app(root, [Comp(wasm=hello_wasm(version))], digest=f"sha256:{version}"))
        await each_process_serves(target, version)


async def test_a_broken_build_leaves_the_old_build_serving_in_every_process(
    target: LocalTarget, tmp_path: Path
) -> None:
    root = tmp_path / "app"
    await target.deploy(make_app(root, [Comp(wasm=hello_wasm("v1"))], digest="sha256:1"))
    with pytest.raises(DeployError, match="does not compile"):
        await target.deploy(make_app(root, [Comp(wasm=b"\0asm\1\0\0\0garbage")], digest="sha256:2"))
    await each_process_serves(target, "v1")


async def test_a_killed_serving_process_is_replaced_and_the_app_keeps_serving(
    target: LocalTarget, tmp_path: Path
) -> None:
    await target.deploy(make_app(tmp_path / "app"))
    first, survivor = processes(target).pids
    # An unrelated traceback the process logged earlier (as aiohttp did per bad request).
    with open(processes(target).log_dir / "guest-process-0.log", "a") as log:
        log.write('Traceback (most recent call last):\n  File "x.py", line 1\n    raise\n    ^\n')
    os.kill(first, signal.SIGKILL)
    await wait_until(lambda: first not in processes(target).pids and len(processes(target).pids) == 2)
    replacement = next(pid for pid in processes(target).pids if pid != survivor)
    # The replacement serves as soon as it has the build; until then the survivor takes all.
    replies = await fresh_gets(target)
    assert all(status == 200 and greeting("v1") in text for status, text in replies), replies
    system = [line.text for line in target.store.logs.since(0).lines if line.stream is LogStream.SYSTEM]
    # Just the cause: no line of some earlier traceback in its log passed off as the reason.
    assert "a serving process exited (killed by SIGKILL); starting another now" in system, system
    # And it really serves: with the survivor gone too, every request is the replacement's.
    os.kill(survivor, signal.SIGKILL)
    await wait_until(lambda: survivor not in processes(target).pids and len(processes(target).pids) == 2)
    assert replacement in processes(target).pids
    replies = await fresh_gets(target)
    assert all(status == 200 and greeting("v1") in text for status, text in replies), replies


async def test_a_replacement_serves_the_deployed_build_not_what_is_on_disk_now(
    target: LocalTarget, tmp_path: Path
) -> None:
    root = tmp_path / "app"
    built = make_app(root, [Comp(wasm=hello_wasm("v1"))], digest="sha256:1")
    await target.deploy(built)
    # The next build has written its output but is not deployed (or is half-written).
    built.wasm["hello"].write_bytes(hello_wasm("v9"))
    first, survivor = processes(target).pids
    os.kill(first, signal.SIGKILL)
    await wait_until(lambda: first not in processes(target).pids and len(processes(target).pids) == 2)
    replacement = next(pid for pid in processes(target).pids if pid != survivor)
    await wait_until(lambda: "demo" in next(p for p in processes(target)._processes if p.proc.pid == replacement).listening)
    with only(target, replacement):
        replies = await fresh_gets(target, count=4)
    assert all(status == 200 and greeting("v1") in text for status, text in replies), replies


async def test_removing_an_app_closes_its_port_in_every_process(target: LocalTarget, tmp_path: Path) -> None:
    await target.deploy(make_app(tmp_path / "app"))
    port = target.bound_port("demo")
    await target.remove("demo")
    for _ in range(8):  # each attempt could reach any process still holding the socket
        with pytest.raises(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()


async def test_close_stops_every_serving_process(tmp_path: Path) -> None:
    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=2), app_ports={"demo": 0})
    await target.start()
    await target.deploy(make_app(tmp_path / "app"))
    pids = processes(target).pids
    await target.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_processes_that_cannot_start_leave_the_app_served_in_process_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Python that dies at start-up, as one with a broken install would.
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ImportError: wasmtime is broken here' >&2\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(serving_process.sys, "executable", str(broken))
    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=2), app_ports={"demo": 0})
    await target.start()
    try:
        result = await target.deploy(make_app(tmp_path / "app"))
        assert any("ImportError: wasmtime is broken here" in note for note in result.notes), result.notes
        assert any("serving in wasmdev's own process" in note for note in result.notes), result.notes
        replies = await fresh_gets(target, count=4)
        assert all(status == 200 and greeting("v1") in text for status, text in replies), replies
    finally:
        await target.close()


async def test_a_missing_python_also_falls_back_to_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serving_process.sys, "executable", str(tmp_path / "no-such-python"))
    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=2), app_ports={"demo": 0})
    await target.start()
    try:
        result = await target.deploy(make_app(tmp_path / "app"))
        assert any("cannot start a serving process" in note for note in result.notes), result.notes
        replies = await fresh_gets(target, count=4)
        assert all(status == 200 for status, _ in replies), replies
    finally:
        await target.close()


async def test_when_no_process_can_be_restarted_the_app_moves_into_wasmdev(
    target: LocalTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await target.deploy(make_app(tmp_path / "app"))
    # From now on a replacement cannot start (a broken Python), and both processes die.
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ImportError: wasmtime is broken here' >&2\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(serving_process.sys, "executable", str(broken))
    for pid in processes(target).pids:
        os.kill(pid, signal.SIGKILL)
    assert target._server is not None
    server = target._server
    await wait_until(lambda: "demo" in server._versions, timeout=30)  # served in-process now
    replies = await fresh_gets(target)
    assert all(status == 200 and greeting("v1") in text for status, text in replies), replies
    system = [line.text for line in target.store.logs.since(0).lines if line.stream is LogStream.SYSTEM]
    assert any("serving this app from wasmdev's own process" in text for text in system), system
    assert any("ImportError: wasmtime is broken here" in text for text in system), system
    # The next deploy serves in-process too, and says why.
    result = await target.deploy(make_app(tmp_path / "app", [Comp(wasm=hello_wasm("v2"))], digest="sha256:2"))
    assert any("serving in wasmdev's own process" in note for note in result.notes), result.notes
    replies = await fresh_gets(target)
    assert all(status == 200 and greeting("v2") in text for status, text in replies), replies


async def test_request_ids_stay_unique_across_processes(target: LocalTarget, tmp_path: Path) -> None:
    await target.deploy(make_app(tmp_path / "app"))
    for pid in processes(target).pids:  # each process serves some: each counts from 1
        with only(target, pid):
            await fresh_gets(target, count=4)
    await requests_reported(target, 8)
    ids = [r.request_id for r in target.store.metrics.requests("demo")]
    assert len(ids) == 8 and len(set(ids)) == 8, ids
