"""What the local target cannot host is said at deploy, with the app, component, import and fix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from devenv.errors import DeployError
from devenv.manifest import load_app
from devenv.targets.local.component_host import HttpComponentRunner
from devenv.targets.local.runtime import WasmRuntime
from devenv.targets.local.spin.deploy import SpinAppSettings, check_imports, host_interfaces
from devenv.targets.local.spin.imports import PLATFORM_2
from devenv.targets.local.wasi.worlds import World
from tests.targets.spin_apps import APPS, SpinServing, app_wasm, copy_app

WASI = ("wasi:http/types@0.2.0", "wasi:io/streams@0.2.0", "wasi:sockets/tcp@0.2.0")


def world(*imports: str) -> World:
    return World("wasi:http/incoming-handler@0.2.0", imports=(*WASI, *imports))


def test_an_import_outside_spins_platform_world_refuses_the_deploy() -> None:
    app = load_app(APPS / "spin-llm-py" / "spin.toml")
    component = app.components["spin-llm-py"]
    with pytest.raises(DeployError) as caught:
        check_imports(component, world("spin:mqtt/mqtt@3.0.0"), host_interfaces(), SpinAppSettings(app))
    err = caught.value
    assert "app `spin-llm-py`" in err.what and "component `spin-llm-py`" in err.what
    assert "spin:mqtt/mqtt@3.0.0 (outbound MQTT)" in err.what
    assert "spin.toml [component.spin-llm-py]" in err.where
    assert "--target k3d" in err.fix


def test_hosted_and_wasi_imports_pass_and_platform_leftovers_become_notes() -> None:
    app = load_app(APPS / "spin-llm-py" / "spin.toml")
    component = app.components["spin-llm-py"]
    # a WASI 0.2 interface we lack (sockets) stays a logged trap: every Python component has it
    assert check_imports(component, world("fermyon:spin/key-value@2.0.0"), host_interfaces(), None) == ()
    notes = check_imports(component, world(*sorted(PLATFORM_2)), host_interfaces(), SpinAppSettings(app))
    named = " ".join(notes)
    assert "fermyon:spin/llm@2.0.0" in named
    for hosted in ("key-value", "variables", "sqlite@", "redis@", "postgres@", "mysql@", "mqtt@", "rdbms-types"):
        assert f"fermyon:spin/{hosted}" not in named


@pytest.fixture(scope="module")
def runtime() -> Iterator[WasmRuntime]:
    rt = WasmRuntime()
    yield rt
    rt.close()


@pytest.fixture
async def serving(runtime: WasmRuntime) -> AsyncIterator[SpinServing]:
    s = SpinServing(runtime)
    await s.listen("spin-llm-py")
    yield s
    s.stop()


@pytest.mark.slow
async def test_a_real_llm_app_is_told_at_deploy_and_its_call_names_the_import(
    serving: SpinServing, tmp_path: Path
) -> None:
    # componentize-py imports Spin's whole platform world, so the deploy cannot tell that the LLM
    # is called: it goes on with a note, and the call fails its request with the same words.
    app = copy_app("spin-llm-py", tmp_path)
    await serving.deploy(app, {"spin-llm-py": app_wasm("spin-llm-py")})
    runner = serving.last_runners["spin-llm-py"]
    assert isinstance(runner, HttpComponentRunner)
    assert any("fermyon:spin/llm@2.0.0 (Spin's LLM inferencing)" in n and "Fix:" in n for n in runner.deploy_notes)
    async with aiohttp.ClientSession() as http, http.get(serving.url("/")) as r:
        assert r.status == 500
    logs = serving.recorder.text()
    assert "unsupported import fermyon:spin/llm@2.0.0#infer" in logs
    assert "--target k3d" in logs
