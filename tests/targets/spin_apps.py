"""Test apps that call Spin's host APIs (tests/apps/*), built once with their own spin.toml build
command and kept by source hash like the samples, and served by the real ``LocalServer`` over
real HTTP.

The deploy is done here, the way the serving side must do it: ``build_runner(...,
spin_app=SpinAppSettings(app, env, runtime_config, self_origin))``, each runner in a
``RunnerTable``, swapped into the server. Everything below the deploy (server, runners, host
functions, stores on disk) is the product's own code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import pytest

from devenv.manifest import load_app
from devenv.model import AppSpec, LogStream
from devenv.runtime_config import RuntimeConfig
from devenv.targets.local.compile_cache import CompileCache
from devenv.targets.local.component_host import build_runner
from devenv.targets.local.executor import ComponentRunner, RequestLimits, RunnerTable
from devenv.targets.local.messages import GuestOutput, ServedRequest
from devenv.targets.local.router import ServingVersion
from devenv.targets.local.runtime import WasmRuntime
from devenv.targets.local.server import LocalServer
from devenv.targets.local.spin.deploy import SpinAppSettings
from tests.targets.component_builds import BUILDS, COMPILED

APPS = Path(__file__).resolve().parents[1] / "apps"


def _is_js(app_dir: Path) -> bool:
    return (app_dir / "package.json").exists()


def _source_key(app_dir: Path) -> str:
    h = hashlib.sha256()
    if _is_js(app_dir):
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
        h.update(f"node={node}".encode())
        sources = [
            app_dir / "package.json",
            *(app_dir / "src").rglob("*.js"),
            *(app_dir / "wit").rglob("*.wit"),
        ]
    elif (app_dir / "requirements.txt").exists():  # its own pinned toolchain (see app_venv)
        sources = [app_dir / "requirements.txt", *app_dir.glob("*.py"), *(app_dir / "src").rglob("*.py")]
    else:
        for tool in ("componentize-py", "spin-sdk"):
            h.update(f"{tool}={version(tool)}\n".encode())
        sources = list((app_dir / "src").rglob("*.py"))
    for path in sorted([app_dir / "spin.toml", *sources]):
        h.update(path.relative_to(app_dir).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:24]


def app_venv(app_dir: Path) -> Path:
    """A virtualenv with the app's requirements.txt (a Spin 3-era app pins spin-sdk 3.4.1 and
    componentize-py 0.17.2, which cannot share wasmdev's venv), made once per requirements and
    kept beside the builds."""
    requirements = (app_dir / "requirements.txt").read_bytes()
    venv = BUILDS.parent / "venvs" / hashlib.sha256(requirements).hexdigest()[:16]
    if (venv / "ready").exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-r", str(app_dir / "requirements.txt")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"installing {app_dir.name}'s requirements failed:\n{done.stderr}"
    (venv / "ready").write_text("")
    return venv


def _require_toolchain(app_dir: Path) -> None:
    if (app_dir / "requirements.txt").exists():
        return  # installed by app_venv
    if _is_js(app_dir):
        if not shutil.which("npm"):
            pytest.skip("npm is not installed (apt-get install nodejs npm; .ci/run installs it)")
    elif shutil.which("componentize-py", path=str(Path(sys.executable).parent)) is None and not shutil.which(
        "componentize-py"
    ):
        pytest.skip("componentize-py is not installed (pip install -e '.[samples]')")


def app_wasm(name: str) -> Path:
    """The built component of ``tests/apps/NAME`` (its only component, also named NAME): a
    Python app with componentize-py, a JavaScript one with npm and @spinframework/build-tools
    (npm install + componentize-js take ~40 s, so the cache matters even more)."""
    app_dir = APPS / name
    _require_toolchain(app_dir)
    cached = BUILDS / f"{name}-{_source_key(app_dir)}.wasm"
    if cached.exists():
        return cached
    manifest = tomllib.loads((app_dir / "spin.toml").read_text())
    component = manifest["component"][name]
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if (app_dir / "requirements.txt").exists():
        # As activating the app's own venv would: componentize-py also finds packages through
        # VIRTUAL_ENV, which still names wasmdev's venv when the suite runs in an activated one.
        venv = app_venv(app_dir)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
        env["VIRTUAL_ENV"] = str(venv)
    BUILDS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BUILDS) as tmp:
        work = Path(tmp) / name
        shutil.copytree(
            app_dir,
            work,
            ignore=shutil.ignore_patterns("target", "__pycache__", ".spin", "node_modules", "dist", "build"),
        )
        done = subprocess.run(
            component["build"]["command"], shell=True, cwd=work, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"building {name} failed:\n{done.stdout}\n{done.stderr}"
        partial = cached.with_suffix(".partial")
        shutil.copyfile(work / component["source"], partial)
        partial.replace(cached)
    return cached


def copy_app(name: str, dest: Path, manifest: str | None = None) -> AppSpec:
    """A private copy of ``tests/apps/NAME`` (its ``.spin/`` is the test's), optionally with a
    different spin.toml, loaded as the product loads it."""
    work = dest / name
    shutil.copytree(
        APPS / name,
        work,
        ignore=shutil.ignore_patterns("target", "__pycache__", ".spin", "node_modules", "dist", "build"),
    )
    if manifest is not None:
        (work / "spin.toml").write_text(manifest)
    return load_app(work / "spin.toml")


@dataclass
class Recorder:
    """The server's observer: what the guest printed and what the host noted, per request."""

    lines: list[tuple[LogStream, str]] = field(default_factory=list)
    served: list[ServedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request_served(self, served: ServedRequest) -> None:
        with self.lock:
            self.served.append(served)

    def guest_output(self, output: GuestOutput) -> None:
        with self.lock:
            self.lines.append((output.stream, output.text))

    def text(self) -> str:
        with self.lock:
            return "\n".join(t for _, t in self.lines)


class SpinServing:
    """One ``LocalServer`` serving one app; ``deploy`` builds and swaps in a version."""

    def __init__(self, runtime: WasmRuntime) -> None:
        self.runtime = runtime
        self.recorder = Recorder()
        self.server = LocalServer("127.0.0.1", self.recorder, workers=2)
        self.server.start()
        self.port = 0
        self.last_runners: dict[str, ComponentRunner] = {}  # component id -> runner of the last deploy

    async def listen(self, app: str) -> int:
        self.port = await self.server.run(self.server.listen(app, 0))
        return self.port

    async def deploy(
        self,
        app: AppSpec,
        wasm: Mapping[str, Path],
        env: Mapping[str, str] | None = None,
        runtime_config: RuntimeConfig | None = None,
    ) -> None:
        settings = SpinAppSettings(
            app=app,
            env=dict(env or {}),
            runtime_config=runtime_config,
            self_origin=f"127.0.0.1:{self.port}",
        )
        routes = []
        for trigger in app.http_triggers:
            component = app.components[trigger.component]
            runner = build_runner(
                component=component,
                wasm_path=wasm[component.id],
                runtime=self.runtime,
                cache=CompileCache(COMPILED, self.runtime.config_key),
                limits=RequestLimits(timeout_s=120),
                spin_app=settings,
            )
            self.last_runners[component.id] = runner
            routes.append((trigger.route, runner))
        table = RunnerTable(digest="sha256:test", routes=routes)
        await self.server.run(self.server.swap(app.name, ServingVersion(app.name, table, app.http_base)))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.stop()
