"""The wheel ships every module of the package and the built-in layouts (not only the repo does)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("wasmdev-*.whl")
    return zipfile.ZipFile(path)


def test_every_module_of_the_package_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    modules = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "devenv").rglob("*.py"))
    missing = [m for m in modules if m not in names]
    assert not missing, f"modules left out of the wheel (add their package to pyproject.toml): {missing}"


def test_built_in_layouts_ship_inside_the_package(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    layouts = sorted(p.name for p in (REPO / "layouts").glob("*.tcss"))
    assert {"side-by-side.tcss", "logs.tcss", "metrics.tcss"} <= set(layouts)
    for name in layouts:
        assert f"devenv/layouts/{name}" in names


def test_the_console_script_is_declared(wheel: zipfile.ZipFile) -> None:
    entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    assert "wasmdev = devenv.cli:main" in wheel.read(entry_points).decode()
