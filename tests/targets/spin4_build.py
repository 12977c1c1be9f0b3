"""A Spin 4 HTTP component, built once with the installed componentize-py and spin-sdk from
``tests/targets/spin4_app`` by its spin.toml build command, and kept under the same test cache as
the samples. The command names the world, ``spin:up/http-trigger@4.1.0``, spin-sdk 5.0.0's only
HTTP world: componentize-py 0.25.1 has no default ("multiple main packages; a world must be
explicitly chosen") when given spin-sdk's WIT."""

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

from tests.targets.component_builds import BUILDS

SPIN4_APP = Path(__file__).resolve().parent / "spin4_app"


def spin4_wasm() -> Path:
    if shutil.which("componentize-py", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("componentize-py is not installed (pip install -e '.[samples]')")
    h = hashlib.sha256()
    for tool in ("componentize-py", "spin-sdk"):
        h.update(f"{tool}={version(tool)}\n".encode())
    for name in ("spin.toml", "app.py"):
        h.update((SPIN4_APP / name).read_bytes())
    cached = BUILDS / f"spin4-{h.hexdigest()[:24]}.wasm"
    if cached.exists():
        return cached
    command = tomllib.loads((SPIN4_APP / "spin.toml").read_text())["component"]["hello-spin4"]["build"]["command"]
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    BUILDS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BUILDS) as tmp:
        work = Path(tmp) / "app"
        shutil.copytree(SPIN4_APP, work)
        done = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"building the Spin 4 app failed:\n{done.stdout}\n{done.stderr}"
        partial = cached.with_suffix(".partial")
        shutil.copyfile(work / "app.wasm", partial)
        partial.replace(cached)
    return cached
