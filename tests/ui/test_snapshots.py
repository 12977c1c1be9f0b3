"""Snapshots of each built-in layout over the seeded session (the same one ``wasmdev screenshot``
renders for the README). Update after an intended change with ``pytest tests/ui --snapshot-update``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from textual.pilot import Pilot

from devenv.ui.app import UnknownLayout
from devenv.ui.layouts import builtin_layouts
from devenv.ui.screenshot import DEFAULT_SIZE, render_screenshot, seeded_app

LAYOUTS = ["side-by-side", "logs", "metrics"]


def test_every_builtin_layout_has_a_snapshot() -> None:
    assert sorted(builtin_layouts()) == sorted(LAYOUTS)


async def _settle(pilot: Pilot) -> None:
    pilot.app.refresh_now()  # type: ignore[attr-defined]
    await pilot.pause()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_snapshot(layout: str, snap_compare) -> None:  # noqa: ANN001 - pytest-textual-snapshot fixture
    assert snap_compare(seeded_app(layout), terminal_size=DEFAULT_SIZE, run_before=_settle)


def test_bootstrap_snapshot(snap_compare) -> None:  # noqa: ANN001
    assert snap_compare(
        seeded_app("side-by-side", scenario="bootstrap"), terminal_size=DEFAULT_SIZE, run_before=_settle
    )


def test_render_screenshot_writes_the_seeded_session(tmp_path: Path) -> None:
    path = render_screenshot("metrics", tmp_path / "metrics.svg")
    svg = path.read_text(encoding="utf-8")
    assert path == tmp_path / "metrics.svg"
    assert svg.startswith("<svg")
    for expected in ("hello-rust", "shop", "py-echo", "Build&#160;failed:&#160;shop", "Latency"):
        assert expected in svg
    png = path.with_suffix(".png")
    if importlib.util.find_spec("cairosvg") is not None:  # the PNG is made only with a converter
        assert png.read_bytes().startswith(b"\x89PNG")
    else:
        assert not png.exists()


def test_render_screenshot_rejects_an_unknown_layout(tmp_path: Path) -> None:
    with pytest.raises(UnknownLayout, match="known layouts: side-by-side, logs, metrics"):
        render_screenshot("nope", tmp_path / "nope.svg")
    assert not (tmp_path / "nope.svg").exists()
