"""A widget's component-class style, read so that a frame drawn mid-restyle cannot crash the UI.

Textual rebuilds a widget's component styles when a stylesheet is applied (switching layouts
applies another); a frame drawn in between finds none, and ``get_component_rich_style`` raises
KeyError (the status bar did, in a CI run, right after a layout switch). The frame is drawn plain
instead, and the next style update draws it again with the styles.
"""

from __future__ import annotations

from rich.style import Style
from textual.widget import Widget

__all__ = ["component_style"]

_MISSING = Style()


def component_style(widget: Widget, name: str) -> Style | None:
    """The partial Rich style of ``widget``'s component class ``name``; None while it is being
    rebuilt (the caller draws plain and must not cache that)."""
    style = widget.get_component_rich_style(name, partial=True, default=_MISSING)
    return None if style is _MISSING else style
