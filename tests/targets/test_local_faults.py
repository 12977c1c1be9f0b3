"""Faults the hostile probe of the local target found (issue 8), each held here.

Each test drives the real target over real HTTP (or raw sockets, for malformed requests), in
serving processes and/or in-process as the fault was seen.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from devenv.model import LogStream
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.base import RecordsRequests
from devenv.targets.local import guest_procs, serving_process
from devenv.targets.local import server as server_module
from devenv.targets.local.target import LocalTarget
from tests.targets.local_helpers import (
    Client,
    Comp,
    local_settings,
    make_app,
    requests_reported,
    serving_version,
    wait_until,
)


@pytest.fixture(params=[2, 0], ids=["guest-processes", "guest-threads"])
def processes_param(request: pytest.FixtureRequest) -> int:
    return int(request.param)


def system_lines(target: LocalTarget) -> list[str]:
    return [line.text for line in target.store.logs.since(0).lines if line.stream is LogStream.SYSTEM]


# --- 1: a stuck route never starves the app -------------------------------------------------------


async def test_six_abandoned_loops_do_not_stall_the_other_paths(tmp_path: Path, processes_param: int) -> None:
    # A long deadline: while those loops run (until it), everything else must still be served.
    target = LocalTarget(
        Store(),
        local_settings(tmp_path, timeout_s=60, guest_processes=processes_param),
        app_ports={"demo": 0},
    )
    try:
        await target.deploy(make_app(tmp_path / "app"))
        url = f"http://127.0.0.1:{target.bound_port('demo')}"
        # Clients that give up: each loop request is abandoned after a moment.
        give_up = aiohttp.ClientTimeout(total=0.5)
        async with aiohttp.ClientSession(
            timeout=give_up, connector=aiohttp.TCPConnector(force_close=True)
        ) as s:

            async def abandoned() -> None:
                try:
                    async with s.get(url + "/hello/loop") as r:
                        await r.read()
                except TimeoutError:
                    pass

            await asyncio.gather(*(abandoned() for _ in range(6)))
        patient = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(
            timeout=patient, connector=aiohttp.TCPConnector(force_close=True)
        ) as s:
            for _ in range(4):  # fresh connections: whichever process accepts must answer
                async with s.get(url + "/hello/x") as r:
                    assert r.status == 200
        # None of the loops waited out its 60 s deadline: those that ran were stopped when their
        # client left (the next test), those still waiting never started.
        lines = request_lines(target)
        assert not any("timed out" in t for t in lines), lines
    finally:
        await target.close()


async def test_a_guest_whose_client_left_is_stopped(tmp_path: Path, processes_param: int) -> None:
    target = LocalTarget(
        Store(), local_settings(tmp_path, timeout_s=600, guest_processes=processes_param), app_ports={"demo": 0}
    )
    try:
        await target.deploy(make_app(tmp_path / "app"))
        url = f"http://127.0.0.1:{target.bound_port('demo')}/hello/loop"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as s:
            with pytest.raises(TimeoutError):
                async with s.get(url) as r:
                    await r.read()
        # Reported long before its 600 s deadline, and said why.
        await wait_until(lambda: any("/hello/loop 500" in t for t in request_lines(target)), timeout=30)
        [line] = [t for t in request_lines(target) if "/hello/loop" in t]
        assert "stopped: its client went away" in line, line
    finally:
        await target.close()


def request_lines(target: LocalTarget) -> list[str]:
    return [ln.text for ln in target.store.logs.since(0).lines if ln.stream is LogStream.REQUEST]


async def test_a_full_waiting_line_is_a_503_with_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One guest thread (plus the spare no single path may take) and a line of two.
    monkeypatch.setattr(server_module, "MIN_WAITING", 2)
    monkeypatch.setattr(server_module, "WAITING_PER_WORKER", 0)
    settings = local_settings(tmp_path, timeout_s=60, guest_processes=0)
    target = LocalTarget(Store(), settings, app_ports={"demo": 0}, workers=1)
    try:
        await target.deploy(make_app(tmp_path / "app"))
        version = serving_version(target)
        async with aiohttp.ClientSession() as session:
            client = Client(session, target)
            loops = [asyncio.create_task(client.get("demo", "/hello/loop")) for _ in range(3)]
            await wait_until(lambda: version.in_flight == 3)  # one running, two waiting
            refused = await client.get("demo", "/hello/loop")
            assert refused.status == 503
            assert refused.headers["Retry-After"] == "1"
            assert "the line is full" in refused.text  # refused at once, not after waiting
            other = await client.get("demo", "/hello/other")  # the spare thread serves it
            assert other.status == 200
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
    finally:
        await target.close()


async def test_the_deadline_counts_from_arrival(tmp_path: Path) -> None:
    """A request that waited for a thread gets what is left of its deadline, not a fresh one."""
    settings = local_settings(tmp_path, timeout_s=1.0, guest_processes=0)
    target = LocalTarget(Store(), settings, app_ports={"demo": 0}, workers=1)
    try:
        await target.deploy(make_app(tmp_path / "app"))
        async with aiohttp.ClientSession() as session:
            client = Client(session, target)
            first, second = await asyncio.gather(
                client.get("demo", "/hello/loop"), client.get("demo", "/hello/loop")
            )
        statuses = sorted((first.status, second.status))
        # The second waited the first's whole second: its deadline had passed when a thread freed.
        assert statuses == [500, 503], (first, second)
        assert "waited past its deadline" in (first.text + second.text)
    finally:
        await target.close()


# --- 3: compiled code bounded by bytes, what rollback needs kept -----------------------------------


async def test_redeploys_keep_the_compile_cache_bounded_by_bytes(tmp_path: Path) -> None:
    from tests.targets.local_helpers import hello_wasm

    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=0), app_ports={"demo": 0})
    try:
        await target.start()
        assert target.cache is not None
        entry_bytes = 0
        # A budget of about three entries, and keep_builds of two.
        target.cache.keep_builds = 2
        for i in range(8):
            await target.deploy(
                make_app(tmp_path / f"app{i}", [Comp(wasm=hello_wasm(f"v{i}"))], digest=f"sha256:{i}")
            )
            if i == 0:
                [first] = target.cache.directory.glob("*.cwasm")
                entry_bytes = first.stat().st_size
                target.cache.disk_bytes = 3 * entry_bytes
                target.cache.memo_bytes = 2 * entry_bytes
        # Compiled code is mapped from its entry: each mapping held had kept the file open.
        open_entries = [link for _, link in _fds() if link.endswith(".cwasm")]
        assert len(open_entries) <= 3, open_entries
        on_disk = list(target.cache.directory.glob("*.cwasm"))
        assert sum(p.stat().st_size for p in on_disk) <= 3 * entry_bytes
        assert target.cache.memo_size <= 2 * entry_bytes
        # The last two builds are still there: a rollback to either is a load, not a compile.
        compiled = target.cache.compiled
        await target.deploy(make_app(tmp_path / "app6", [Comp(wasm=hello_wasm("v6"))], digest="sha256:6"))
        assert target.cache.compiled == compiled
    finally:
        await target.close()


# --- 4: a header value that is not UTF-8 ------------------------------------------------------------


async def test_an_obs_text_header_reaches_a_wagi_guest_as_spin_passes_it(
    tmp_path: Path, processes_param: int
) -> None:
    target = LocalTarget(
        Store(), local_settings(tmp_path, guest_processes=processes_param), app_ports={"demo": 0}
    )
    try:
        await target.deploy(make_app(tmp_path / "app"))
        raw = (
            b"GET /hello/env HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Latin: caf\xe9\r\nX-Plain: ok\r\n"
            b"Connection: close\r\n\r\n"
        )
        reply = await raw_request(target.bound_port("demo"), raw)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert b"HTTP_X_LATIN=CORRUPT VALUE" in reply
        assert b"HTTP_X_PLAIN=ok" in reply
    finally:
        await target.close()


async def raw_request(port: int | None, data: bytes) -> bytes:
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), timeout=30)
    writer.close()
    return reply


# --- 5: a malformed request is one log line --------------------------------------------------------


async def test_a_malformed_request_is_one_line_not_a_traceback(
    tmp_path: Path, processes_param: int, capfd: pytest.CaptureFixture[str]
) -> None:
    target = LocalTarget(
        Store(), local_settings(tmp_path, guest_processes=processes_param), app_ports={"demo": 0}
    )
    try:
        await target.deploy(make_app(tmp_path / "app"))
        reply = await raw_request(
            target.bound_port("demo"), b"GET /hello HTTP/1.1\r\nBad Header Line\r\n\r\n"
        )
        assert reply.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), reply[:200]
        await wait_until(lambda: any("Error handling request" in t for t in system_lines(target)))
        [line] = [t for t in system_lines(target) if "Error handling request" in t]
        assert line == (
            "Error handling request from 127.0.0.1: BadHttpMessage: Invalid header token: b'Bad Header Line' ^"
        )
        if target._processes is not None:
            logs = list(target._processes.log_dir.glob("guest-process-*.log"))
            assert all("Traceback" not in p.read_text() for p in logs)
    finally:
        await target.close()
    assert "Traceback" not in capfd.readouterr().err


def test_a_serving_process_log_is_rotated_past_its_bound(tmp_path: Path) -> None:
    log = tmp_path / "guest-process-0.log"
    log.write_bytes(b"x" * (serving_process.LOG_MAX_BYTES + 1))
    with open(log, "ab") as appending:  # as the process holds it
        serving_process.rotate_log(log, copy=True)
        appending.write(b"after\n")
    assert log.read_bytes() == b"after\n"
    assert (tmp_path / "guest-process-0.log.1").stat().st_size == serving_process.LOG_MAX_BYTES + 1


# --- 6: messages that say what happened -------------------------------------------------------------


async def test_a_guest_cut_short_by_shutdown_is_not_called_timed_out(
    tmp_path: Path, processes_param: int
) -> None:
    store = Store()
    target = LocalTarget(store, local_settings(tmp_path, timeout_s=600, guest_processes=processes_param),
                         app_ports={"demo": 0})  # fmt: skip
    await target.deploy(make_app(tmp_path / "app"))
    async with aiohttp.ClientSession() as session:
        stuck = asyncio.create_task(Client(session, target).get("demo", "/hello/loop"))
        await asyncio.sleep(0)
        await wait_until(
            lambda: any(ln.text.startswith("GET") for ln in store.logs.since(0).lines) or _running(target)
        )
        await target.close()
        stuck.cancel()
        await asyncio.gather(stuck, return_exceptions=True)
    lines = [ln.text for ln in store.logs.since(0).lines if ln.stream is LogStream.REQUEST]
    assert any("/hello/loop 500" in t and "stopped: wasmdev is shutting down" in t for t in lines), lines
    assert not any("timed out" in t for t in lines), lines


def _running(target: LocalTarget) -> bool:
    """A guest is running: in-process, the version's lease; in processes, a thread's CPU."""
    if target._processes is None:
        return serving_version(target).in_flight == 1
    for pid in target._processes.pids:
        with open(f"/proc/{pid}/stat") as f:
            utime = int(f.read().rsplit(")", 1)[1].split()[11])
        if utime > 50:  # half a second of CPU: that is the loop
            return True
    return False


# --- 7: nothing left behind by a killed process; no idle process after the fallback -------------------


async def test_a_killed_process_leaves_no_staged_files(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "greeting.txt").write_text("hi")
    from devenv.model import FileMount

    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=2), app_ports={"demo": 0})
    try:
        app = make_app(tmp_path / "app", [Comp(files=(FileMount(source="greeting.txt"),))])
        await target.deploy(app)
        processes = target._processes
        assert processes is not None
        staged = [processes.log_dir / "files-0", processes.log_dir / "files-1"]
        assert all(any(d.iterdir()) for d in staged)
        os.kill(processes.pids[0], signal.SIGKILL)
        await wait_until(lambda: not staged[0].exists())
    finally:
        await target.close()


async def test_after_the_fallback_no_serving_process_stays_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guest_procs, "MAX_RESTARTS", 0)  # the first exit is one too many
    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=2), app_ports={"demo": 0})
    try:
        await target.deploy(make_app(tmp_path / "app"))
        processes = target._processes
        assert processes is not None
        first, second = processes.pids
        os.kill(first, signal.SIGKILL)
        os.kill(second, signal.SIGKILL)
        await wait_until(lambda: processes.broken is not None, timeout=30)
        await wait_until(lambda: processes.pids == [], timeout=30)
        async with aiohttp.ClientSession() as session:
            reply = await Client(session, target).get("demo", "/hello/x")  # served in-process now
        assert reply.status == 200
        await asyncio.sleep(0.5)  # a replacement started meanwhile would be up by now
        assert processes.pids == []
    finally:
        await target.close()


# --- 8: request bodies are not kept -------------------------------------------------------------------


async def test_a_request_body_is_released_after_the_request(tmp_path: Path) -> None:
    target = LocalTarget(
        Store(), local_settings(tmp_path, guest_processes=0), app_ports={"demo": 0}, workers=1
    )
    try:
        await target.deploy(make_app(tmp_path / "app"))
        async with aiohttp.ClientSession() as session:
            reply = await Client(session, target).request(
                "POST", "demo", "/hello/echo", data=b"z" * 8_000_000
            )
        assert reply.status == 200
        sizes = [os.fstat(int(fd)).st_size for fd, link in _fds() if "wasmdev-stdin" in link]
        assert sizes and all(size == 0 for size in sizes), sizes
    finally:
        await target.close()


def _fds() -> list[tuple[str, str]]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append((fd, os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:
            pass
    return out


# --- 9: a hung process is replaced ----------------------------------------------------------------------


async def test_a_hung_serving_process_is_replaced(tmp_path: Path) -> None:
    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=2), app_ports={"demo": 0})
    try:
        await target.deploy(make_app(tmp_path / "app"))
        processes = target._processes
        assert processes is not None
        hung = processes.pids[0]
        os.kill(hung, signal.SIGSTOP)
        await wait_until(lambda: hung not in processes.pids and len(processes.pids) == 2, timeout=60)
        await wait_until(lambda: any("hung" in t for t in system_lines(target)))
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as s:
            for _ in range(6):
                async with s.get(f"http://127.0.0.1:{target.bound_port('demo')}/hello/x") as r:
                    assert r.status == 200
    finally:
        await target.close()


# --- recording real traffic for replay --------------------------------------------------------------


async def test_recording_captures_exchanges_except_replays(tmp_path: Path, processes_param: int) -> None:
    store = Store()
    recorded: list[a.RequestRecorded] = []
    store.subscribe(
        lambda _s, action: recorded.append(action) if isinstance(action, a.RequestRecorded) else None
    )
    from dataclasses import replace

    settings = local_settings(tmp_path, guest_processes=processes_param)
    settings = replace(settings, local=replace(settings.local, record_body_bytes=1000))
    target = LocalTarget(store, settings, app_ports={"demo": 0})
    try:
        assert isinstance(target, RecordsRequests)
        await target.deploy(make_app(tmp_path / "app"))
        async with aiohttp.ClientSession() as session:
            client = Client(session, target)
            await client.request("POST", "demo", "/hello/echo?q=1", data=b"a" * 10)
            await requests_reported(target, 1)
            assert recorded == []  # off: nothing captured
            target.set_recording(True)
            # Turned on over each process's control socket (or on the server loop): wait for it.
            await wait_until(lambda: target._server is not None and target._server.recording)
            if target._processes is not None:
                await wait_until(lambda: target._processes.recording_applied)
            await client.request("POST", "demo", "/hello/echo?q=2", data=b"b" * 1500)
            await client.request(
                "POST", "demo", "/hello/echo?q=3", data=b"c", headers={"x-wasmdev-replay": "1"}
            )
            await requests_reported(target, 3)
        [exchange] = [r.exchange for r in recorded]
        assert (exchange.method, exchange.path, exchange.query, exchange.status) == (
            "POST",
            "/hello/echo",
            "q=2",
            200,
        )
        assert exchange.body == b"b" * 1000 and exchange.body_truncated
        assert exchange.response_body == b"b" * 1000 and exchange.response_truncated
        assert exchange.component == "hello" and exchange.app == "demo"
    finally:
        await target.close()


# --- issue 9: a refusal keeps its fix ------------------------------------------------------------------


async def test_an_unsupported_component_keeps_its_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from devenv.model import Executor
    from devenv.targets.base import UnsupportedApp
    from devenv.targets.local import component_host

    def refuse(**_: object) -> None:
        raise UnsupportedApp(what="its world is wasi:cli/command", where="component `api`", fix="build it for wasi:http")

    monkeypatch.setattr(component_host, "build_runner", refuse)
    component_magic = b"\0asm\x0d\x00\x01\x00"  # a component's header: the host is asked to run it
    app = make_app(tmp_path / "app", [Comp(id="api", routes=("/api",), wasm=component_magic, executor=Executor.HTTP)])
    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=0), app_ports={"demo": 0})
    try:
        with pytest.raises(UnsupportedApp) as raised:
            await target.deploy(app)
        assert raised.value.fix == "build it for wasi:http"
        assert "its world is wasi:cli/command" in raised.value.what
        assert "fix: build it for wasi:http" in str(raised.value)
    finally:
        await target.close()
