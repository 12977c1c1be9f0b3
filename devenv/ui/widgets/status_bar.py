"""The one-line status bar: target, watching or paused, app health counts, layout."""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from devenv.model import AppStatus, EngineState
from devenv.ui.widgets.component_style import component_style


class StatusBar(Static):
    """The bar itself; its warning colour (paused, rolled back) comes from the theme's CSS."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"status-bar--warning"}
    DEFAULT_CSS = """
    StatusBar > .status-bar--warning { color: $warning; text-style: bold; }
    """

    @property
    def warning_style(self) -> Style:
        return component_style(self, "status-bar--warning") or Style(bold=True)


def status_text(state: EngineState, layout: str, warning: Style | None = None) -> Text:
    text = Text()
    text.append("wasmdev", "bold")
    text.append(f"  target {state.target}")
    if state.node_runtime is not None:
        text.append(f" ({state.node_runtime.describe()})")
    if state.watching:
        text.append("  ● watching", "green")
    else:
        text.append("  ⏸ paused (p resumes)", warning or "")
    counts: dict[AppStatus, int] = {}
    for app in state.apps.values():
        counts[app.status] = counts.get(app.status, 0) + 1
    text.append(f"  {len(state.apps)} apps")
    for status, style in (
        (AppStatus.SERVING, "green"),
        (AppStatus.DEGRADED, "yellow"),
        (AppStatus.FAILED, "red"),
    ):
        if counts.get(status):
            text.append(f"  {counts[status]} {status.value}", style)
    rolled_back = sorted(app.name for app in state.apps.values() if app.rolled_back_at is not None)
    if rolled_back:
        text.append(f"  ⏪ rolled back: {', '.join(rolled_back)} (save to build again)", warning or "")
    text.append(f"  layout {layout}", "dim")
    if state.workspace is not None:
        text.append(f"  {state.workspace}", "dim")
    return text
