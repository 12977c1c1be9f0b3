"""The Python component samples, built once and kept: the wasm under ``.wasmdev/test-builds``
keyed by a hash of the sources and toolchain versions, and compiled code in a shared compile
cache, so the suite pays componentize-py (~11 s) and wasmtime's compile only when a sample
changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample-apps"
CACHE_ROOT = Path(os.environ.get("WASMDEV_TEST_CACHE", REPO / ".wasmdev" / "test-cache"))
BUILDS = CACHE_ROOT / "builds"
COMPILED = CACHE_ROOT / "compiled"  # a CompileCache directory shared by every test session


SAMPLE_WORLD = "fermyon:spin/http-trigger@2.0.0"  # what the samples' spin.toml build for


def _source_key(app_dir: Path, world: str) -> str:
    h = hashlib.sha256(world.encode() + b"\0")
    for tool in ("componentize-py", "spin-sdk"):
        h.update(f"{tool}={version(tool)}\n".encode())
    for path in sorted([app_dir / "spin.toml", *(app_dir / "src").rglob("*.py")]):
        h.update(path.relative_to(app_dir).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:24]


def sample_wasm(name: str, world: str = SAMPLE_WORLD) -> Path:
    """The built component of ``sample-apps/NAME``, running its spin.toml build command if the
    sources changed since the cached build; ``world`` swaps the world that command targets (the
    samples' code also serves as a plain ``wasi:http/proxy@0.2.0`` component). Skips the test
    when the toolchain is missing."""
    if shutil.which("componentize-py", path=str(Path(sys.executable).parent)) is None and not shutil.which(
        "componentize-py"
    ):
        pytest.skip("componentize-py is not installed (pip install -e '.[samples]')")
    app_dir = SAMPLES / name
    cached = BUILDS / f"{name}-{_source_key(app_dir, world)}.wasm"
    if cached.exists():
        return cached
    manifest = tomllib.loads((app_dir / "spin.toml").read_text())
    component = manifest["component"][name]
    command = component["build"]["command"]
    assert SAMPLE_WORLD in command, f"{name}'s build command no longer names {SAMPLE_WORLD}"
    command = command.replace(SAMPLE_WORLD, world)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    BUILDS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BUILDS) as tmp:
        # The manifest's own build command, in a private copy of the app: a watcher or another
        # test building the sample in place cannot race with this build.
        work = Path(tmp) / name
        shutil.copytree(app_dir, work, ignore=shutil.ignore_patterns("target", "__pycache__"))
        done = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"building {name} failed:\n{done.stdout}\n{done.stderr}"
        partial = cached.with_suffix(".partial")
        shutil.copyfile(work / component["source"], partial)
        partial.replace(cached)
    return cached
