"""``wasmdev screenshot``: render the seeded session in a layout to SVG (and PNG when CairoSVG is
installed), so README images come from the product itself and match the snapshot tests."""

from __future__ import annotations

import asyncio
from datetime import UTC
from pathlib import Path

from devenv.ui.app import WasmdevApp
from devenv.ui.layouts import discover_layouts
from devenv.ui.seed import SEED_NOW, seeded_bootstrap_store, seeded_store

DEFAULT_SIZE = (160, 48)


SCENARIOS = {"session": seeded_store, "bootstrap": seeded_bootstrap_store}


def seeded_app(layout: str, workspace: Path | None = None, *, scenario: str = "session") -> WasmdevApp:
    """The dashboard over a seeded store (``scenario``) with a frozen clock and UTC timestamps."""
    return WasmdevApp(
        SCENARIOS[scenario](),
        layout=layout,
        workspace=workspace,
        clock=lambda: SEED_NOW,
        tz=UTC,
    )


async def capture_svg(app: WasmdevApp, size: tuple[int, int] = DEFAULT_SIZE) -> str:
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        app.refresh_now()
        await pilot.pause()
        return app.export_screenshot(title=f"wasmdev · {app.layout_name}")


def render_screenshot(
    layout: str, path: Path, size: tuple[int, int] = DEFAULT_SIZE, *, scenario: str = "session"
) -> Path:
    """Write the SVG to ``path`` (given a .svg suffix) and a PNG beside it when possible.

    ``scenario`` is "session" (apps serving, one failed build) or "bootstrap" (a cluster target
    being set up). Returns the SVG's path.
    """
    discover_layouts(None).require(layout)  # built-ins only: the seeded session has no workspace
    if scenario not in SCENARIOS:
        raise ValueError(f"no seeded scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    svg_path = path if path.suffix == ".svg" else path.with_suffix(".svg")
    svg = asyncio.run(capture_svg(seeded_app(layout, scenario=scenario), size))
    svg_path.parent.mkdir(parents=True, exist_ok=True)
    svg_path.write_text(svg, encoding="utf-8")
    _write_png(svg, svg_path.with_suffix(".png"))
    return svg_path


def _write_png(svg: str, png_path: Path) -> bool:
    try:
        import cairosvg  # optional: a pure library call, no external process
    except ImportError:
        return False
    cairosvg.svg2png(bytestring=svg.encode("utf-8"), write_to=str(png_path))
    return True
