"""A guest that fails costs one request a 500 with a short reason; the server keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from devenv.model import LogStream
from devenv.store.store import Store
from devenv.targets.local.target import LocalTarget
from tests.targets.local_helpers import Client, make_app, requests_reported, serving_version, wait_until

TIMEOUT_S = 0.3
MEMORY_MB = 16


@pytest.fixture(params=[2, 0], ids=["guest-processes", "guest-threads"])
async def strict(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    """A target with a short deadline and a small memory cap, serving the hello guest."""
    from tests.targets.local_helpers import local_settings

    store = Store()
    settings = local_settings(tmp_path, timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB, guest_processes=request.param)
    target = LocalTarget(store, settings, app_ports={"demo": 0})
    await target.start()
    await target.deploy(make_app(tmp_path / "app"))
    async with aiohttp.ClientSession() as session:
        yield Client(session, target)
    await target.close()


def request_line(client: Client) -> str:
    lines = [line for line in client.target.store.logs.since(0).lines if line.stream is LogStream.REQUEST]
    return lines[-1].text


async def test_trap_is_a_500_and_the_next_request_is_fine(strict: Client) -> None:
    reply = await strict.get("demo", "/hello/trap")
    assert reply.status == 500
    assert "unreachable" in reply.text and "`hello`" in reply.text
    await requests_reported(strict.target, 1)
    assert request_line(strict).startswith("GET /hello/trap 500 ")
    assert "trapped" in request_line(strict)
    stderr = [
        line.text for line in strict.target.store.logs.since(0).lines if line.stream is LogStream.STDERR
    ]
    assert "hello-wat: about to trap" in stderr  # output before the trap is still logged
    assert (await strict.get("demo", "/hello")).status == 200


async def test_infinite_loop_is_stopped_by_the_deadline(strict: Client) -> None:
    reply = await strict.get("demo", "/hello/loop")
    assert reply.status == 500
    assert f"timed out after {TIMEOUT_S:g}s" in reply.text
    await requests_reported(strict.target, 1)
    record = strict.target.store.metrics.requests("demo")[-1]
    assert record.latency_ms >= TIMEOUT_S * 1000  # it ran until the deadline, not less
    assert (await strict.get("demo", "/hello")).status == 200


async def test_memory_blowup_is_capped(strict: Client) -> None:
    reply = await strict.get("demo", "/hello/grow")
    assert reply.status == 500
    assert f"out of memory: linear memory reached the {MEMORY_MB} MiB cap" in reply.text
    await requests_reported(strict.target, 1)
    usage = strict.target.usage("demo")
    assert (MEMORY_MB - 1) * 1024 * 1024 <= usage.memory_high_water_bytes <= MEMORY_MB * 1024 * 1024
    assert (await strict.get("demo", "/hello")).status == 200


async def test_nonzero_exit_and_bad_output_are_500s(strict: Client) -> None:
    exited = await strict.get("demo", "/hello/exit")
    assert exited.status == 500 and "exited with status 3" in exited.text
    bad = await strict.get("demo", "/hello/nohdr")
    assert bad.status == 500 and "bad CGI output" in bad.text
    assert (await strict.get("demo", "/hello")).status == 200
    await requests_reported(strict.target, 3)
    assert strict.target.usage("demo").errors_total == 2


async def test_a_stuck_guest_does_not_block_other_requests(tmp_path: Path) -> None:
    import asyncio

    from tests.targets.local_helpers import local_settings

    # Not the strict fixture's 0.3 s deadline: a loaded machine can take that long to serve the
    # second request, and the loop must still hold its worker when that one is answered.
    # In-process: the test watches the version's in_flight (the same code serves in each process).
    settings = local_settings(tmp_path, timeout_s=5.0, guest_processes=0)
    target = LocalTarget(Store(), settings, app_ports={"demo": 0})
    try:
        await target.deploy(make_app(tmp_path / "app"))
        version = serving_version(target)
        async with aiohttp.ClientSession() as session:
            client = Client(session, target)
            stuck = asyncio.create_task(client.get("demo", "/hello/loop"))
            await wait_until(lambda: version.in_flight == 1)  # the loop holds a worker now
            fine = await client.get("demo", "/hello")  # served while the loop still holds it
            assert fine.status == 200
            assert not stuck.done()
            assert (await stuck).status == 500
    finally:
        await target.close()


async def test_close_interrupts_a_stuck_guest(tmp_path: Path) -> None:
    import asyncio
    import os

    from tests.targets.local_helpers import local_settings

    fds_before = len(os.listdir("/proc/self/fd"))
    store = Store()
    # In-process: the test watches the version's in_flight (the same code serves in each process).
    target = LocalTarget(store, local_settings(tmp_path, timeout_s=600, guest_processes=0), app_ports={"demo": 0})
    await target.deploy(make_app(tmp_path / "app"))
    async with aiohttp.ClientSession() as session:
        stuck = asyncio.create_task(Client(session, target).get("demo", "/hello/loop"))
        version = serving_version(target)
        await wait_until(lambda: version.in_flight == 1)
        await target.close()
        stuck.cancel()
        await asyncio.gather(stuck, return_exceptions=True)
    # close() returned with the guest already stopped (not 10 minutes later) and reported.
    [record] = store.metrics.requests("demo")
    assert (record.path, record.status) == ("/hello/loop", 500)
    # The guest threads' stdio memfds went with their threads.
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2


async def test_an_unchecked_wasmtime_release_is_refused_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devenv.errors import TargetUnavailable
    from devenv.targets.local import runtime
    from tests.targets.local_helpers import local_settings

    monkeypatch.setattr(runtime, "wasmtime_version", lambda: "51.0.0")
    target = LocalTarget(Store(), local_settings(tmp_path), app_ports={"demo": 0})
    with pytest.raises(TargetUnavailable) as err:
        await target.start()
    message = str(err.value)
    assert "wasmtime 51.0.0 is installed" in message and "wasmtime>=50,<51" in message
    await target.close()


async def test_close_cleans_up_even_when_the_server_does_not_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devenv.targets.local.server import LocalServer
    from tests.targets.local_helpers import local_settings

    target = LocalTarget(Store(), local_settings(tmp_path), app_ports={"demo": 0})
    await target.deploy(make_app(tmp_path / "app"))
    staging = target._staging_root
    assert staging is not None and staging.exists()
    real_close = LocalServer.close

    async def stuck(self: LocalServer, interrupt_guests: object = None) -> None:
        await real_close(self)
        raise TimeoutError("the server loop did not answer")

    monkeypatch.setattr(LocalServer, "close", stuck)
    with pytest.raises(TimeoutError):
        await target.close()
    assert not staging.exists()
    assert target._runtime is not None and not target._runtime._ticker.is_alive()
