"""The local target hands apps its embedded host cannot run (WASI 0.3 / Spin 4 components) to an
installed `spin up` (the fake Spin 4 CLI on PATH) behind the app's own port, records their
requests like any other app's, and moves an app back to the embedded host when a build no
longer needs Spin."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import wasmtime

from devenv.config import LocalSettings, Settings
from devenv.errors import DeployError
from devenv.model import BuiltApp
from devenv.store.store import Store
from devenv.targets.local.target import LocalTarget
from tests.fakes.spin import harness
from tests.fakes.spin.harness import P2, P3, wasm_digest, write_spin_app
from tests.targets.local_helpers import make_app

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


def mqtt_app(root: Path) -> BuiltApp:
    """A component that imports Spin's MQTT interface (which the embedded host never hosts) and
    exports a 0.2 handler: the embedded host could compile it, but not serve it."""
    built = write_spin_app(root, P2, name="mq")
    text = (
        '(component (import "fermyon:spin/mqtt@2.0.0" (instance)) (component $c) '
        f'(instance $i (instantiate $c)) (export "{P2}" (instance $i)))'
    )
    (root / "app.wasm").write_bytes(bytes(wasmtime.wat2wasm(text)))
    return built


async def test_auto_serves_under_spin_an_app_importing_what_the_embedded_host_lacks(
    fake_spin_on_path: str, tmp_path: Path
) -> None:
    target = LocalTarget(Store(), settings(tmp_path), app_ports={"mq": 0})
    try:
        result = await target.deploy(mqtt_app(tmp_path / "app"))
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
            await target.deploy(mqtt_app(tmp_path / "app"))
        assert "fermyon:spin/mqtt@2.0.0" in err.value.what
        assert "install Spin" in err.value.fix and "--target k3d" in err.value.fix
    finally:
        await target.close()
