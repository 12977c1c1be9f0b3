"""The local target hands apps its embedded host cannot run (WASI 0.3 / Spin 4 components) to an
installed `spin up` (the fake Spin 4 CLI on PATH) behind the app's own port, records their
requests like any other app's, and moves an app back to the embedded host when a build no
longer needs Spin."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest
import wasmtime

from devenv.config import LocalSettings, Settings
from devenv.errors import DeployError, TargetUnavailable
from devenv.model import BuiltApp
from devenv.store.store import Store
from devenv.targets.local.spin_cli import RuntimeChoice
from devenv.targets.local.target import LocalTarget
from tests.fakes.spin import harness
from tests.fakes.spin.harness import P2, P3, wasm_digest, write_spin_app
from tests.targets.local_helpers import Comp, make_app

fake_spin_on_path = harness.fake_spin_on_path


def settings(tmp_path: Path) -> Settings:
    local = LocalSettings(host="127.0.0.1", base_port=0, guest_processes=0, cache_dir=str(tmp_path / "cache"))
    return Settings(root=tmp_path, local=local)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.text()


async def test_a_spin_4_app_is_served_by_spin_and_recorded_by_wasmdev(fake_spin_on_path: str, tmp_path: Path) -> None:
    store = Store()
    target = LocalTarget(store, settings(tmp_path), app_ports={"hello": 0})
    try:
        result = await target.deploy(write_spin_app(tmp_path / "app", P3, marker="v1"))
        assert any("served by `spin up` (4.1.0" in n for n in result.notes)
        base = result.urls[0].rstrip("/")
        status, body = await get(base + "/greet")
        assert (status, body) == (200, f"fake spin 4.1.0: hello {wasm_digest(tmp_path / 'app' / 'app.wasm')}\n")
        served = [r for r in store.metrics.requests("hello") if r.path.startswith("/greet")]
        assert served and served[0].status == 200 and served[0].component == "hello"

        again = await target.deploy(write_spin_app(tmp_path / "app", P3, marker="v2"))
        assert again.urls == result.urls  # the same port: wasmdev's proxy stays, Spin's process changed
        assert (await get(base + "/"))[1] == f"fake spin 4.1.0: hello {wasm_digest(tmp_path / 'app' / 'app.wasm')}\n"
    finally:
        await target.close()


async def test_without_spin_a_spin_4_app_is_refused_before_any_compile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    target = LocalTarget(Store(), settings(tmp_path), app_ports={"hello": 0})
    try:
        with pytest.raises(DeployError) as err:
            await target.deploy(write_spin_app(tmp_path / "app", P3))
        assert "no `spin` is on PATH" in err.value.what
        assert "install Spin" in err.value.fix
    finally:
        await target.close()
    compiled = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert compiled == []  # refused from the binary's export names, not after a compile


async def test_an_app_moves_back_to_the_embedded_host_when_spin_is_no_longer_needed(
    fake_spin_on_path: str, tmp_path: Path
) -> None:
    target = LocalTarget(Store(), settings(tmp_path), app_ports={"demo": 0})
    try:
        first = await target.deploy(write_spin_app(tmp_path / "spin", P3, name="demo"))
        assert (await get(first.urls[0].rstrip("/") + "/"))[1].startswith("fake spin 4.1.0: demo ")
        second = await target.deploy(make_app(tmp_path / "wat", name="demo"))
        assert not any("spin up" in n for n in second.notes)
        status, body = await get(second.urls[0] + "/")
        assert status == 200 and "hello-wat v1!" in body  # the embedded host serves it now
    finally:
        await target.close()


def llm_app(root: Path) -> BuiltApp:
    """A component that imports Spin's LLM interface (which the embedded host never hosts) and
    exports a 0.2 handler: the embedded host could compile it, but not serve it."""
    built = write_spin_app(root, P2, name="mq")
    text = (
        '(component (import "fermyon:spin/llm@2.0.0" (instance)) (component $c) '
        f'(instance $i (instantiate $c)) (export "{P2}" (instance $i)))'
    )
    (root / "app.wasm").write_bytes(bytes(wasmtime.wat2wasm(text)))
    return built


async def test_auto_serves_under_spin_an_app_importing_what_the_embedded_host_lacks(
    fake_spin_on_path: str, tmp_path: Path
) -> None:
    target = LocalTarget(Store(), settings(tmp_path), app_ports={"mq": 0})
    try:
        result = await target.deploy(llm_app(tmp_path / "app"))
        assert any("served by `spin up`" in n for n in result.notes)
        assert (await get(result.urls[0].rstrip("/") + "/"))[1].startswith("fake spin 4.1.0: mq ")
    finally:
        await target.close()


async def test_without_spin_that_app_is_refused_at_deploy_naming_the_import_and_the_fixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    target = LocalTarget(Store(), settings(tmp_path), app_ports={"mq": 0})
    try:
        with pytest.raises(DeployError) as err:
            await target.deploy(llm_app(tmp_path / "app"))
        assert "fermyon:spin/llm@2.0.0" in err.value.what
        assert "install Spin" in err.value.fix and "--target k3d" in err.value.fix
    finally:
        await target.close()


# --- moving between the embedded host and `spin up` without a gap ---------------------------------


def broken_spin_app(root: Path) -> BuiltApp:
    """A Spin 4 app whose second component is missing: chosen for Spin, refused by `spin up`."""
    built = write_spin_app(root, P3, name="demo")
    (root / "api.wasm").unlink()
    return built


async def test_a_spin_up_that_fails_leaves_the_embedded_version_serving(
    fake_spin_on_path: str, tmp_path: Path
) -> None:
    target = LocalTarget(Store(), settings(tmp_path), app_ports={"demo": 0})
    try:
        first = await target.deploy(make_app(tmp_path / "wat", name="demo"))
        url = first.urls[0] + "/"
        assert (await get(url))[1].count("hello-wat v1!") == 1
        with pytest.raises(DeployError) as err:
            await target.deploy(broken_spin_app(tmp_path / "spin"))
        assert "Failed to load component `api`" in err.value.what
        status, body = await get(url)  # the port never closed: the embedded version still serves
        assert status == 200 and "hello-wat v1!" in body
        assert target.bound_port("demo") == int(url.split(":")[2].split("/")[0])
    finally:
        await target.close()


async def test_a_failed_build_back_on_the_embedded_host_leaves_spin_serving(
    fake_spin_on_path: str, tmp_path: Path
) -> None:
    target = LocalTarget(Store(), settings(tmp_path), app_ports={"demo": 0})
    try:
        first = await target.deploy(write_spin_app(tmp_path / "spin", P3, name="demo"))
        url = first.urls[0].rstrip("/") + "/"
        before = await get(url)
        assert before[1].startswith("fake spin 4.1.0: demo ")
        broken = make_app(tmp_path / "wat", [Comp(wasm=b"\x00asm\x01\x00\x00\x00 not a module")], name="demo")
        with pytest.raises(DeployError):
            await target.deploy(broken)
        assert await get(url) == before  # Spin still serves the app on its port
        # ... and a good embedded build then takes the same port over.
        moved = await target.deploy(make_app(tmp_path / "wat2", name="demo"))
        assert moved.urls[0].startswith(url.rstrip("/"))
        assert "hello-wat v1!" in (await get(moved.urls[0] + "/"))[1]
    finally:
        await target.close()


# --- shutting down while `spin up` starts ------------------------------------------------------------


def spin_processes(marker: str) -> list[int]:
    """Live processes whose command line mentions ``marker`` (the test's own app folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and " up " in cmdline.replace("\0", " ") and state != "Z":
            found.append(int(proc.name))
    return found


async def test_closing_while_spin_up_starts_leaves_no_spin_process(
    fake_spin_on_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SPIN_STARTUP_S", "30")  # still starting when the target closes
    target = LocalTarget(Store(), settings(tmp_path), app_ports={"hello": 0})
    marker = str(tmp_path / "app")
    deploy = asyncio.create_task(target.deploy(write_spin_app(tmp_path / "app", P3)))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not spin_processes(marker):
            assert loop.time() < deadline and not deploy.done(), "spin up never started"
            await asyncio.sleep(0.02)
        await target.close()
        with pytest.raises(TargetUnavailable):
            await deploy
        assert spin_processes(marker) == []
        with pytest.raises(TargetUnavailable):  # a deploy after close starts nothing
            await target._spin_apps.deploy(write_spin_app(tmp_path / "app", P3), 0)  # noqa: SLF001
        assert spin_processes(marker) == []
    finally:
        if not deploy.done():
            deploy.cancel()
        await target.close()


# --- recording, the runtime config and the single parse -------------------------------------------


async def test_recording_covers_apps_served_by_spin(fake_spin_on_path: str, tmp_path: Path) -> None:
    store = Store()
    target = LocalTarget(store, settings(tmp_path), app_ports={"hello": 0})
    try:
        target.set_recording(True)  # before the app's Spin server exists
        result = await target.deploy(write_spin_app(tmp_path / "app", P3))
        base = result.urls[0].rstrip("/")
        async with aiohttp.ClientSession() as s:
            async with s.post(base + "/items?x=1", data=b"payload") as r:
                assert r.status == 200
            async with s.get(base + "/replayed", headers={"x-wasmdev-replay": "1"}) as r:
                assert r.status == 200
        exchanges = store.exchanges.exchanges("hello")
        assert [(e.method, e.path, e.query, e.body, e.status) for e in exchanges] == [
            ("POST", "/items", "x=1", b"payload", 200)
        ]
        assert exchanges[0].component == "hello" and exchanges[0].response_body.startswith(b"fake spin 4.1.0")
        target.set_recording(False)
        await get(base + "/later")
        assert len(store.exchanges.exchanges("hello")) == 1
    finally:
        await target.close()


async def test_spin_up_gets_the_workspace_runtime_config_file_and_request_timeout(fake_spin_on_path: str, tmp_path: Path) -> None:
    local = LocalSettings(
        host="127.0.0.1",
        base_port=0,
        guest_processes=0,
        cache_dir=str(tmp_path / "cache"),
        runtime_config=Path("runtime-config.toml"),  # relative to the workspace root
        request_timeout_s=7.5,
    )
    (tmp_path / "runtime-config.toml").write_text("this is [not toml\n")
    target = LocalTarget(Store(), Settings(root=tmp_path, local=local), app_ports={"hello": 0})
    try:
        with pytest.raises(DeployError) as err:
            await target.deploy(write_spin_app(tmp_path / "app", P3))
        assert f"runtime config file '{tmp_path / 'runtime-config.toml'}'" in err.value.what
        (tmp_path / "runtime-config.toml").write_text('[key_value_store.default]\ntype = "spin"\n')
        result = await target.deploy(write_spin_app(tmp_path / "app", P3))
        assert (await get(result.urls[0].rstrip("/") + "/"))[0] == 200
        # The proxy waits for Spin as long as the embedded host lets a guest run.
        assert target._spin_apps._servers["hello"].request_timeout_s == 7.5  # noqa: SLF001
    finally:
        await target.close()


async def test_choosing_a_runtime_reads_each_component_once(
    fake_spin_on_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devenv.targets.local import spin_cli
    from devenv.targets.local.spin_apps import SpinApps

    reads: list[Path] = []
    real = spin_cli.read_world

    def counting(path: Path):  # noqa: ANN202
        reads.append(path)
        return real(path)

    monkeypatch.setattr(spin_cli, "read_world", counting)
    apps = SpinApps("auto", "127.0.0.1", on_log=lambda _l: None, on_request=lambda _r: None)
    built = llm_app(tmp_path / "app")
    assert await apps.choose(built) is RuntimeChoice.SPIN
    assert sorted(reads) == sorted(built.wasm.values())  # two components, each parsed once


async def test_an_app_served_by_serving_processes_moves_to_spin_and_back_on_its_port(
    fake_spin_on_path: str, tmp_path: Path
) -> None:
    from tests.targets.local_helpers import local_settings

    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=2), app_ports={"demo": 0})
    try:
        first = await target.deploy(make_app(tmp_path / "wat", name="demo"))
        url = first.urls[0] + "/"
        assert "hello-wat v1!" in (await get(url))[1]
        to_spin = await target.deploy(write_spin_app(tmp_path / "spin", P3, name="demo"))
        assert to_spin.urls[0].rstrip("/") + "/" == url.split("/hello")[0] + "/"  # the same port
        assert (await get(url))[1].startswith("fake spin 4.1.0: demo ")
        back = await target.deploy(make_app(tmp_path / "wat2", name="demo"))
        assert back.urls == first.urls
        assert "hello-wat v1!" in (await get(url))[1]
    finally:
        await target.close()


async def test_the_port_never_refuses_or_ignores_a_request_while_an_app_moves_between_runtimes(
    fake_spin_on_path: str, tmp_path: Path
) -> None:
    target = LocalTarget(Store(), settings(tmp_path), app_ports={"demo": 0})
    try:
        first = await target.deploy(make_app(tmp_path / "wat", name="demo"))
        url = first.urls[0] + "/"
        port = target.bound_port("demo")
        assert port is not None
        outcomes: list[str] = []

        async def knock(until: asyncio.Task) -> None:  # type: ignore[type-arg]
            # The kernel completes a connection to a listening port even before anyone
            # accepts it: a refusal means the port was closed at that moment. Whoever takes
            # the connection must then answer the request or close it, never leave it hanging.
            while not until.done():
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError as err:
                    outcomes.append(f"refused: {err}")
                    continue
                try:
                    writer.write(b"GET /hello HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
                    try:
                        data = await asyncio.wait_for(reader.read(), 10)
                    except TimeoutError:
                        outcomes.append("hung")
                        continue
                    except ConnectionError:
                        data = b""
                    outcomes.append("answered" if data.startswith(b"HTTP/1.1 ") else "closed")
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()

        for built in (write_spin_app(tmp_path / "spin", P3, name="demo"), make_app(tmp_path / "wat2", name="demo")):
            deploy = asyncio.create_task(target.deploy(built))
            await asyncio.gather(deploy, knock(deploy), knock(deploy))
            assert target.bound_port("demo") == port
        counts = {outcome: outcomes.count(outcome) for outcome in set(outcomes)}
        assert counts.get("answered"), counts
        assert set(counts) <= {"answered", "closed"}, counts  # none refused, none left hanging
        assert "hello-wat v1!" in (await get(url))[1]
    finally:
        await target.close()
