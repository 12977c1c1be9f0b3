"""An installed Spin as the local runtime, through the fake `spin` (Spin 4 CLI behaviour) on PATH:
finding it, choosing it per app, and serving behind wasmdev's recording proxy with swaps that
keep the old process serving until the new one answers."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import subprocess
from pathlib import Path
from types import MappingProxyType

import aiohttp
import pytest

from devenv.errors import DeployError
from devenv.model import LogLine, LogStream, RecordedExchange, RequestRecord
from devenv.targets.local.spin_cli import (
    RuntimeChoice,
    SpinCli,
    choose_runtime,
    find_spin,
    parse_spin_version,
)
from devenv.targets.local.spin_runtime import SpinServer
from tests.fakes.spin import harness
from tests.fakes.spin.harness import FAKE_SPIN_DIR, P2, P3, P3_RC, built_app, wasm_digest, write_spin_app

fake_spin_on_path = harness.fake_spin_on_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the fake answers as Spin's CLI does ------------------------------------------------------------


def test_the_fake_answers_version_and_errors_like_spin(fake_spin_on_path: str, tmp_path: Path) -> None:
    spin = str(FAKE_SPIN_DIR / "spin")
    version = subprocess.run([spin, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("spin 4.1.0 (")
    missing = subprocess.run(
        [spin, "up", "--from", str(tmp_path / "nope.toml")], capture_output=True, text=True
    )
    assert missing.returncode == 1 and missing.stderr.startswith("Error: Failed to load manifest")
    usage = subprocess.run([spin, "up", "--bogus"], capture_output=True, text=True)
    assert usage.returncode == 2 and "unexpected argument '--bogus'" in usage.stderr


def test_finds_spin_and_reads_its_version(fake_spin_on_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    found = find_spin()
    assert found == SpinCli(path=str(FAKE_SPIN_DIR / "spin"), version="4.1.0")
    monkeypatch.setenv("FAKE_SPIN_VERSION", "3.6.3")
    assert find_spin().spin_version == (3, 6)
    assert find_spin(path="/nonexistent") is None
    assert parse_spin_version("spin 4.0.1 (6a9fab8 2026-04-20)\n") == "4.0.1"
    assert parse_spin_version("spin 4.2.0-pre0 (abc 2026-09-01)") == "4.2.0-pre0"


# --- which runtime serves an app --------------------------------------------------------------------

SPIN_41 = SpinCli(path="/usr/local/bin/spin", version="4.1.0")


def test_auto_serves_embedded_what_it_can_and_spin_the_rest(tmp_path: Path) -> None:
    assert choose_runtime(write_spin_app(tmp_path / "a", P2), "auto", SPIN_41) is RuntimeChoice.EMBEDDED
    assert choose_runtime(write_spin_app(tmp_path / "b", P3), "auto", SPIN_41) is RuntimeChoice.SPIN
    assert choose_runtime(write_spin_app(tmp_path / "c", P2), "spin", SPIN_41) is RuntimeChoice.SPIN


def test_without_spin_a_wasi_0_3_app_is_refused_with_both_fixes(tmp_path: Path) -> None:
    with pytest.raises(DeployError) as err:
        choose_runtime(write_spin_app(tmp_path / "a", P3_RC), "auto", None)
    assert "component hello is a WASI 0.3 (Spin 4) component" in err.value.what
    assert "no `spin` is on PATH" in err.value.what
    assert "install Spin ≥ 4.0" in err.value.fix
    assert "`wasmdev cluster image --shim v0.25.1`, then `wasmdev up --target k3d`" in err.value.fix


def test_a_spin_4_1_app_on_spin_4_0_asks_for_an_upgrade_and_embedded_only_refuses(tmp_path: Path) -> None:
    with pytest.raises(DeployError) as err:
        choose_runtime(write_spin_app(tmp_path / "a", P3), "auto", SpinCli("/bin/spin", "4.0.1"))
    assert "needs Spin 4.1 or later" in err.value.what and "upgrade Spin" in err.value.fix
    # No shim release has Spin 4.1, so the cluster is not offered as a fix for it.
    with pytest.raises(DeployError) as err:
        choose_runtime(write_spin_app(tmp_path / "b", P3), "embedded", SPIN_41)
    assert 'set [local] runtime = "auto"' in err.value.fix and "cluster" not in err.value.fix


# --- serving under spin up ------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.logs: list[LogLine] = []
        self.requests: list[RequestRecord] = []

    def texts(self, stream: LogStream) -> list[str]:
        return [line.text for line in self.logs if line.stream is stream]


async def wait_for(predicate, timeout: float = 20.0) -> None:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


@pytest.fixture
async def served(fake_spin_on_path: str):  # noqa: ANN201
    rec = Recorder()
    spin = find_spin()
    assert spin is not None
    server = SpinServer(spin, "hello", free_port(), on_log=rec.logs.append, on_request=rec.requests.append)
    await server.start()
    try:
        yield server, rec
    finally:
        await server.close()


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.text()


async def test_serves_through_the_proxy_with_request_records_and_logs(served, tmp_path: Path) -> None:  # noqa: ANN001
    server, rec = served
    assert (await get(server.port, "/"))[0] == 503  # nothing deployed yet
    built = write_spin_app(tmp_path / "app", P3)
    await server.deploy(built)

    status, body = await get(server.port, "/greet?x=1")
    assert status == 200 and body == f"fake spin 4.1.0: hello {wasm_digest(tmp_path / 'app' / 'app.wasm')}\n"
    assert (await get(server.port, "/api/exact"))[1].startswith("fake spin 4.1.0: api ")
    await wait_for(lambda: len([r for r in rec.requests if r.status == 200]) >= 2)  # after each response
    records = [r for r in rec.requests if r.status == 200]
    assert [(r.component, r.method, r.path) for r in records] == [
        ("hello", "GET", "/greet?x=1"),
        ("api", "GET", "/api/exact"),
    ]
    assert all(r.latency_ms > 0 and r.app == "hello" for r in records)
    await wait_for(lambda: "hello: GET /greet?x=1" in rec.texts(LogStream.STDOUT))
    assert any(t.startswith("Serving http://127.0.0.1:") for t in rec.texts(LogStream.STDOUT))
    assert "Available Routes:" in rec.texts(LogStream.STDOUT)
    assert 'Logging component stdio to ".spin/logs/"' in rec.texts(LogStream.STDERR)


async def test_a_redeploy_keeps_serving_until_the_new_process_answers(
    served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    server, rec = served
    await server.deploy(write_spin_app(tmp_path / "app", P3, marker="v1"))
    old_digest = wasm_digest(tmp_path / "app" / "app.wasm")
    old_pid = server._current.proc.pid  # noqa: SLF001 - the test checks the old process is gone
    monkeypatch.setenv("FAKE_SPIN_STARTUP_S", "0.6")  # a slow start of the new process
    server.env = dict(os.environ)
    v2 = write_spin_app(tmp_path / "app", P3, marker="v2")
    new_digest = wasm_digest(tmp_path / "app" / "app.wasm")
    assert new_digest != old_digest

    deploy = asyncio.create_task(server.deploy(v2))
    answers: list[tuple[int, str]] = []
    while not deploy.done():
        answers.append(await get(server.port, "/"))
    await deploy

    assert answers and all(status == 200 for status, _ in answers), answers  # no gap, no 502
    assert (await get(server.port, "/"))[1] == f"fake spin 4.1.0: hello {new_digest}\n"
    await wait_for(lambda: not os.path.exists(f"/proc/{old_pid}") or _zombie(old_pid))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


async def test_a_failing_start_keeps_the_old_version_serving(served, tmp_path: Path) -> None:  # noqa: ANN001
    server, rec = served
    await server.deploy(write_spin_app(tmp_path / "app", P3))
    before = await get(server.port, "/")
    (tmp_path / "app" / "app.wasm").unlink()  # the next build's component is missing

    with pytest.raises(DeployError) as err:
        await server.deploy(built_app(tmp_path / "app"))
    assert "`spin up` exited with code 1: Error: Failed to load component `hello`" in err.value.what
    assert "previous version keeps serving" in err.value.what
    assert await get(server.port, "/") == before
    assert any(line.level == "error" for line in rec.logs if line.stream is LogStream.STDERR)


async def test_a_component_the_installed_spin_does_not_serve_fails_with_spins_words(
    fake_spin_on_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SPIN_VERSION", "4.0.1")
    spin = find_spin()
    server = SpinServer(spin, "hello", free_port(), on_log=lambda _l: None, on_request=lambda _r: None)
    await server.start()
    try:
        with pytest.raises(DeployError) as err:
            await server.deploy(write_spin_app(tmp_path / "app", P3))
    finally:
        await server.close()
    assert "Expected component to export one of" in err.value.what


async def test_a_spin_process_that_dies_is_logged_and_answered_with_502(served, tmp_path: Path) -> None:  # noqa: ANN001
    server, rec = served
    await server.deploy(write_spin_app(tmp_path / "app", P3))
    os.kill(server._current.proc.pid, 9)  # noqa: SLF001 - the test kills the process wasmdev started
    await wait_for(lambda: any("exited with code -9" in t for t in rec.texts(LogStream.SYSTEM)))
    status, body = await get(server.port, "/")
    assert status == 502 and "spin did not answer" in body


@pytest.mark.slow
def test_a_real_spin_sdk_5_component_is_chosen_for_spin_and_refused_without_it(tmp_path: Path) -> None:
    from tests.targets.spin4_build import spin4_wasm

    root = tmp_path / "app"
    root.mkdir()
    (root / "spin.toml").write_text(
        'spin_manifest_version = 2\n\n[application]\nname = "py4"\n\n'
        '[[trigger.http]]\nroute = "/..."\ncomponent = "py4"\n\n'
        f'[component.py4]\nsource = "{spin4_wasm()}"\n'
    )
    built = built_app(root)
    assert choose_runtime(built, "auto", SPIN_41) is RuntimeChoice.SPIN
    with pytest.raises(DeployError) as err:
        choose_runtime(built, "auto", None)
    assert "exports wasi:http/handler@0.3.0" in err.value.what and "install Spin ≥ 4.1" in err.value.fix


async def test_a_busy_app_port_is_one_clear_error(fake_spin_on_path: str) -> None:
    spin = find_spin()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = SpinServer(spin, "hello", port, on_log=lambda _l: None, on_request=lambda _r: None)
        with pytest.raises(DeployError) as err:
            await server.start()
    assert f"cannot listen on 127.0.0.1:{port}" in err.value.what and "another port" in err.value.fix
    await server.close()


async def test_uploads_past_1_mib_are_forwarded_as_the_embedded_server_takes_them(
    served, tmp_path: Path  # noqa: ANN001
) -> None:
    server, rec = served
    await server.deploy(write_spin_app(tmp_path / "app", P3))
    async with aiohttp.ClientSession() as session:
        upload = b"x" * (3 * 1024 * 1024)  # past aiohttp's default limit of 1 MiB
        async with session.post(f"http://127.0.0.1:{server.port}/upload", data=upload) as resp:
            # Read whole: a client that leaves after the status cuts the body off, a 502 record.
            answer = await resp.read()
            assert resp.status == 200, answer
    await wait_for(lambda: bool(rec.requests))  # reported once the response is sent, not before
    assert [(r.method, r.path, r.status) for r in rec.requests] == [("POST", "/upload", 200)]


async def test_uploads_past_1_mib_are_recorded_up_to_the_cap(
    fake_spin_on_path: str, tmp_path: Path
) -> None:
    exchanges: list[RecordedExchange] = []
    server = SpinServer(
        find_spin(),
        "hello",
        free_port(),
        on_log=lambda _l: None,
        on_request=lambda _r: None,
        on_exchange=exchanges.append,
        record_body_bytes=1000,
    )
    server.recording = True
    await server.start()
    try:
        await server.deploy(write_spin_app(tmp_path / "app", P3))
        upload = b"x" * (3 * 1024 * 1024)  # past aiohttp's default limit of 1 MiB
        async with aiohttp.ClientSession() as session:
            async with session.put(f"http://127.0.0.1:{server.port}/upload", data=upload) as resp:
                assert resp.status == 200, await resp.text()
    finally:
        await server.close()
    [exchange] = exchanges
    assert exchange.method == "PUT" and exchange.path == "/upload" and exchange.status == 200
    assert exchange.body == upload[:1000] and exchange.body_truncated
    assert exchange.response_body.startswith(b"fake spin 4.1.0: hello") and not exchange.response_truncated


async def test_a_kept_build_is_served_from_its_frozen_wasm_not_the_latest_output(
    served, tmp_path: Path  # noqa: ANN001
) -> None:
    server, _rec = served
    root = tmp_path / "app"
    v1 = write_spin_app(root, P3, marker="v1")
    (root / "static").mkdir()
    (root / "static" / "page.txt").write_text("kept\n")
    await server.deploy(v1)
    v1_digest = wasm_digest(root / "app.wasm")
    frozen = tmp_path / "history" / "v1"  # as the history keeps it (engine/history.freeze_build)
    (frozen / "files" / "static").mkdir(parents=True)
    shutil.copyfile(root / "app.wasm", frozen / "hello.wasm")
    shutil.copyfile(root / "static" / "page.txt", frozen / "files" / "static" / "page.txt")
    kept_v1 = dataclasses.replace(
        v1, wasm=MappingProxyType({**v1.wasm, "hello": frozen / "hello.wasm"}), files_root=frozen / "files"
    )

    await server.deploy(write_spin_app(root, P3, marker="v2"))  # the build output now holds v2
    (root / "static" / "page.txt").write_text("today\n")  # and the granted file changed since v1
    v2_digest = wasm_digest(root / "app.wasm")
    assert (await get(server.port, "/"))[1] == f"fake spin 4.1.0: hello {v2_digest}\n"

    await server.deploy(kept_v1)  # a rollback
    assert (await get(server.port, "/"))[1] == f"fake spin 4.1.0: hello {v1_digest}\n"
    staged = server._current.manifest.staged  # noqa: SLF001 - the staged folder must go with its process
    assert staged is not None and (staged / "static" / "page.txt").read_text() == "kept\n"  # as at v1
    assert (staged / ".spin").resolve() == (root / ".spin").resolve()  # the app's data is the app's
    assert (root / "spin.toml").read_text().count("app.wasm") == 1  # the app's own manifest untouched

    await server.deploy(built_app(root))  # the current build again: from the app's own manifest
    assert (await get(server.port, "/"))[1] == f"fake spin 4.1.0: hello {v2_digest}\n"
    await wait_for(lambda: not staged.exists())


async def test_a_streamed_response_reaches_the_client_as_it_comes(
    served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    server, rec = served
    gate = tmp_path / "gate"
    monkeypatch.setenv("FAKE_SPIN_STREAM_GATE", str(gate))
    server.env = dict(os.environ)
    server.recording = True
    exchanges: list[RecordedExchange] = []
    server.on_exchange = exchanges.append
    await server.deploy(write_spin_app(tmp_path / "app", P3))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{server.port}/stream/events") as resp:
            assert resp.status == 200
            # The second part is only sent once the first has come through the proxy.
            first = await asyncio.wait_for(resp.content.readline(), timeout=30)
            assert first == b"first\n"
            gate.touch()
            assert await resp.content.read() == b"second\n"
    await wait_for(lambda: len(exchanges) == 1)
    assert exchanges[0].response_body == b"first\nsecond\n" and rec.requests[-1].status == 200
