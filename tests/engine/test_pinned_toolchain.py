"""A real Spin 3 Python app built by its own pinned toolchain, in its own virtualenv.

Spin 3 apps pin ``spin-sdk==3.4.1`` and ``componentize-py==0.17.2`` and build with
``componentize-py -w spin-http componentize app -o app.wasm`` (the http-py template of that
time). The test creates that virtualenv once (cached under the test cache by a hash of the
requirements; pip installs from PyPI), puts its bin first on PATH the way activating it does,
and runs the real dev loop: the build must run the virtualenv's componentize-py, not the one in
the environment wasmdev itself runs in (0.25.1 with spin-sdk 5 there, which cannot build this
app). Which one ran is read from the component: componentize-py 0.17.2 bundles CPython 3.12
(``libpython3.12.so``), 0.25.1 bundles 3.14.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devenv.model import AppStatus
from tests.engine.session import dev_session
from tests.targets.component_builds import CACHE_ROOT

pytestmark = pytest.mark.slow

REQUIREMENTS = "spin-sdk==3.4.1\ncomponentize-py==0.17.2\n"

APP_PY = """\
from spin_sdk import http
from spin_sdk.http import Request, Response


class IncomingHandler(http.IncomingHandler):
    def handle_request(self, request: Request) -> Response:
        return Response(200, {"content-type": "text/plain"}, bytes("Hello from Python!", "utf-8"))
"""

SPIN_TOML = """\
spin_manifest_version = 2

[application]
name = "test"
version = "0.1.0"
authors = ["wasmdev tests"]
description = "Spin 3's http-py template"

[[trigger.http]]
route = "/..."
component = "test"

[component.test]
source = "app.wasm"
[component.test.build]
command = "componentize-py -w spin-http componentize app -o app.wasm"
watch = ["*.py", "requirements.txt"]
"""


@pytest.fixture(scope="session")
def spin3_venv() -> Path:
    """A virtualenv with the app's pinned toolchain, made once per requirements and Python."""
    key = hashlib.sha256(f"{sys.version}\n{REQUIREMENTS}".encode()).hexdigest()[:16]
    venv = CACHE_ROOT / "venvs" / f"spin3-py-{key}"
    if (venv / "ready").exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)  # a half-made one (venvs are not relocatable)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    (venv / "requirements.txt").write_text(REQUIREMENTS)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-r", str(venv / "requirements.txt")],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(f"pip could not install the app's pinned toolchain:\n{done.stdout}\n{done.stderr}")
    (venv / "ready").write_text("")
    return venv


async def test_a_spin3_app_is_built_by_the_componentize_py_pinned_in_the_users_virtualenv(
    tmp_path: Path, spin3_venv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tmp_path / "hello"
    app.mkdir()
    (app / "app.py").write_text(APP_PY)
    (app / "requirements.txt").write_text(REQUIREMENTS)
    (app / "spin.toml").write_text(SPIN_TOML)
    # Activating the app's virtualenv: its bin comes before the one wasmdev (and pytest) run from.
    monkeypatch.setenv("PATH", f"{spin3_venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("VIRTUAL_ENV", str(spin3_venv))
    assert shutil.which("componentize-py") != shutil.which(
        "componentize-py", path=str(Path(sys.executable).parent)
    )

    async with dev_session(tmp_path, CACHE_ROOT / "local-cache") as s:
        await s.wait(
            lambda st: st.apps["test"].status is AppStatus.SERVING, "the Spin 3 app serving", timeout=400
        )
        response = await s.get("test", "/")
        assert response.status_code == 200 and response.text == "Hello from Python!"

    wasm = (app / "app.wasm").read_bytes()
    assert b"libpython3.12.so" in wasm  # componentize-py 0.17.2's CPython: the venv's tool ran
    assert b"libpython3.14.so" not in wasm
