"""Hot swap: a new build replaces the old atomically; in-flight requests finish on the build they
started with; a build that does not compile or link leaves the old one serving.

These watch the serving version's internals (its in-flight count, its staged files), so they run
the server in-process (``guest_processes=0``): each serving process runs this same server code,
and test_local_procs.py covers what is particular to serving from processes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from devenv.errors import DeployError
from devenv.store.store import Store
from devenv.targets.local.target import LocalTarget
from tests.targets import local_helpers
from tests.targets.local_helpers import (
    Client,
    Comp,
    hello_wasm,
    local_settings,
    make_app,
    serving_version,
    wait_until,
)

store, client = local_helpers.store, local_helpers.client


@pytest.fixture
async def target(store: Store, tmp_path: Path) -> AsyncIterator[LocalTarget]:
    t = LocalTarget(store, local_settings(tmp_path, guest_processes=0), app_ports={"demo": 0, "other": 0})
    await t.start()
    yield t
    await t.close()


async def _body_held_until(go: asyncio.Event) -> AsyncIterator[bytes]:
    """A request body whose second half is sent only once ``go`` is set: its request stays in
    flight (on the version it picked) for as long as the test needs, however slow the machine."""
    yield b"first half;"
    await go.wait()
    yield b"second half"


async def test_in_flight_request_finishes_on_v1_while_new_requests_get_v2(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    await target.deploy(make_app(tmp_path / "v1", [Comp(wasm=hello_wasm("v1"))], digest="sha256:1"))
    v1 = serving_version(target)
    # Held by its body rather than by the guest's 400 ms sleep alone: a deploy and a request on a
    # loaded machine can take longer than that. The guest still sleeps, on v1, after the swap.
    go = asyncio.Event()
    slow = asyncio.create_task(client.request("POST", "demo", "/hello/sleep", data=_body_held_until(go)))
    try:
        await wait_until(lambda: v1.in_flight == 1)
        await target.deploy(make_app(tmp_path / "v2", [Comp(wasm=hello_wasm("v2"))], digest="sha256:2"))
        fresh = await client.get("demo", "/hello")
        assert not slow.done(), "the slow request should still be in flight during the swap"
    finally:
        go.set()
    assert "hello-wat v2!" in fresh.text
    assert "hello-wat v1!" in (await slow).text


async def test_broken_build_leaves_the_old_versionserving_version(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    await target.deploy(make_app(tmp_path / "v1", [Comp(wasm=hello_wasm("v1"))], digest="sha256:1"))

    garbage = make_app(tmp_path / "bad", [Comp(wasm=b"\0asm\x01\0\0\0\x99broken")], digest="sha256:bad")
    with pytest.raises(DeployError) as err:
        await target.deploy(garbage)
    assert "does not compile" in str(err.value) and "hello.wasm" in str(err.value)

    unlinkable = (
        b'(module (import "env" "missing" (func)) (memory (export "memory") 1) (func (export "_start")))'
    )
    import wasmtime

    bad_import = make_app(
        tmp_path / "imp", [Comp(wasm=bytes(wasmtime.wat2wasm(unlinkable)))], digest="sha256:imp"
    )
    with pytest.raises(DeployError) as err:
        await target.deploy(bad_import)
    assert "does not provide" in str(err.value) and "missing" in str(err.value)

    no_start = bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1))'))
    with pytest.raises(DeployError) as err:
        await target.deploy(make_app(tmp_path / "ns", [Comp(wasm=no_start)], digest="sha256:ns"))
    assert "_start" in str(err.value)

    reply = await client.get("demo", "/hello")
    assert reply.status == 200 and "hello-wat v1!" in reply.text


async def test_redeploying_the_same_build_reuses_its_code_and_restages_granted_files(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    from devenv.model import FileMount

    root = tmp_path / "app"
    root.mkdir()
    (root / "greeting.txt").write_text("before\n")
    app = make_app(root, [Comp(files=(FileMount("greeting.txt"),))])
    first = await target.deploy(app)
    assert target.cache is not None
    compiled = target.cache.compiled
    (root / "greeting.txt").write_text("after\n")  # a granted file changed; the wasm did not
    again = await target.deploy(app)
    assert again == first
    assert target.cache.compiled == compiled
    assert (await client.get("demo", "/hello/file?greeting.txt")).text == "after\n"


async def test_port_in_use_names_the_port_and_the_fix(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=0), app_ports={"demo": port})
        await target.start()
        try:
            with pytest.raises(DeployError) as err:
                await target.deploy(make_app(tmp_path / "app"))
        finally:
            await target.close()
    message = str(err.value)
    assert f"port {port}" in message
    assert "[apps.demo].port" in message and "[local].base_port" in message


async def test_retired_version_files_are_removed_once_its_last_request_ends(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    from devenv.model import FileMount

    root = tmp_path / "app"
    root.mkdir()
    (root / "greeting.txt").write_text("one\n")
    await target.deploy(make_app(root, [Comp(files=(FileMount("greeting.txt"),))], digest="sha256:1"))
    assert (await client.get("demo", "/hello/file?greeting.txt")).text == "one\n"
    staged = list((target._staging_root or Path("/nonexistent")).iterdir())
    assert len(staged) == 1

    (root / "greeting.txt").write_text("two\n")
    v1 = serving_version(target)
    go = asyncio.Event()  # the request stays on v1 until its body is complete: no race with a slow deploy
    slow = asyncio.create_task(client.request("POST", "demo", "/hello/sleep", data=_body_held_until(go)))
    try:
        await wait_until(lambda: v1.in_flight == 1)
        await target.deploy(make_app(root, [Comp(files=(FileMount("greeting.txt"),))], digest="sha256:2"))
        assert staged[0].exists(), "v1's files must stay while a request still runs on v1"
        assert (await client.get("demo", "/hello/file?greeting.txt")).text == "two\n"
        assert staged[0].exists(), "v1's files must stay while a request still runs on v1"
    finally:
        go.set()
    assert (await slow).status == 200
    assert not staged[0].exists()


async def test_close_is_idempotent_and_frees_the_port(tmp_path: Path) -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=0), app_ports={"demo": 0})
    await target.deploy(make_app(tmp_path / "app"))
    port = target.bound_port("demo")
    assert port
    await target.close()
    await target.close()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))  # nothing listens there any more
    leftover = {t.name for t in threading.enumerate()} - before
    assert not {n for n in leftover if n.startswith("wasmdev")}, leftover
    with pytest.raises(KeyError):
        target.usage("demo")


async def test_a_request_whose_body_is_still_arriving_at_a_swap_runs_on_its_version_files(
    target: LocalTarget, tmp_path: Path
) -> None:
    from devenv.model import FileMount

    root = tmp_path / "app"
    root.mkdir()
    (root / "greeting.txt").write_text("one\n")
    await target.deploy(make_app(root, [Comp(files=(FileMount("greeting.txt"),))], digest="sha256:1"))
    v1 = serving_version(target)
    reader, writer = await asyncio.open_connection("127.0.0.1", target.bound_port("demo"))
    try:
        writer.write(
            b"POST /hello/file?greeting.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Connection: close\r\n\r\nab"
        )
        await writer.drain()
        await wait_until(lambda: v1.in_flight == 1)  # the handler picked v1 and awaits the body
        (root / "greeting.txt").write_text("two\n")
        await target.deploy(make_app(root, [Comp(files=(FileMount("greeting.txt"),))], digest="sha256:2"))
        writer.write(b"cd")
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"\r\n\r\none\n"), reply


async def test_removing_an_app_past_its_grace_keeps_files_until_the_guest_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devenv.model import FileMount
    from devenv.targets.local import server

    monkeypatch.setattr(server, "SHUTDOWN_GRACE_S", 0.05)  # the handler is cancelled mid-guest
    root = tmp_path / "app"
    root.mkdir()
    (root / "greeting.txt").write_text("one\n")
    # The guest loops until its 2 s deadline: far longer than remove() takes, even on a busy machine.
    target = LocalTarget(Store(), local_settings(tmp_path, timeout_s=2.0, guest_processes=0), app_ports={"demo": 0})
    try:
        await target.deploy(make_app(root, [Comp(files=(FileMount("greeting.txt"),))]))
        v1 = serving_version(target)
        staged = list((target._staging_root or Path("/nonexistent")).iterdir())
        async with aiohttp.ClientSession() as session:
            stuck = asyncio.create_task(Client(session, target).get("demo", "/hello/loop"))
            await wait_until(lambda: v1.in_flight == 1)
            await target.remove("demo")
            assert v1.in_flight == 1 and staged[0].exists(), "the guest still runs on these files"
            # The last request's release removes the files just after in_flight reaches 0 (on the
            # guest's thread), so wait for the files themselves: a leak still times out here.
            await wait_until(lambda: v1.in_flight == 0)
            await wait_until(lambda: not staged[0].exists())
            with contextlib.suppress(aiohttp.ClientError):  # its connection was closed at the grace
                await stuck
    finally:
        await target.close()


async def test_remove_during_a_deploy_of_the_same_app_wins(target: LocalTarget, tmp_path: Path) -> None:
    deploying = asyncio.create_task(target.deploy(make_app(tmp_path / "app")))
    await asyncio.sleep(0)  # the deploy has started compiling in a worker thread
    await target.remove("demo")
    await deploying
    assert target.bound_port("demo") is None, "a removed app must not come back"
    assert target._server is not None and "demo" not in target._server._versions


async def test_close_during_a_deploy_fails_that_deploy_with_a_clear_error(tmp_path: Path) -> None:
    from devenv.errors import TargetUnavailable

    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=0), app_ports={"demo": 0})
    await target.start()
    deploying = asyncio.create_task(target.deploy(make_app(tmp_path / "app")))
    await asyncio.sleep(0)  # the deploy has started compiling in a worker thread
    await target.close()
    with pytest.raises(TargetUnavailable) as err:
        await deploying
    assert "closed while app `demo` was being deployed" in str(err.value)
    assert target.bound_port("demo") is None


async def test_each_route_of_a_shared_wagi_module_has_its_entrypoint_checked(
    target: LocalTarget, tmp_path: Path
) -> None:
    import dataclasses

    app = make_app(tmp_path / "app", [Comp(routes=("/hello/...", "/other/..."))])
    first, second = app.spec.http_triggers
    spec = dataclasses.replace(
        app.spec, http_triggers=(first, dataclasses.replace(second, wagi_entrypoint="nope"))
    )
    with pytest.raises(DeployError) as err:
        await target.deploy(dataclasses.replace(app, spec=spec))
    assert "no function `nope`" in str(err.value) and "/other/..." in str(err.value)
