"""A virtual log view: holds a bounded window of lines and renders only the rows on screen.

Why not Textual's ``Log``: it holds plain strings (no per-app / per-stream colour without a
highlighter pass over every line) and re-measures text as it is written. Here, as in toolong, each
frame renders just the visible rows from ``LogLine`` objects, with a small LRU of rendered strips,
so a flood of 10,000 lines a second costs a deque extend per refresh tick, not a render per line.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import timezone

from rich.style import Style
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from devenv.model import LogLine, LogStream
from devenv.ui.log_filter import LogFilter
from devenv.ui.widgets.component_style import component_style
from devenv.ui.widgets.log_style import APP_PALETTE_SIZE, LogStyles, app_positions, log_line_segments

DEFAULT_MAX_LINES = 10_000
_STRIP_CACHE_SIZE = 512  # a few screens' worth: scrolling back and forth re-renders nothing


class LogView(ScrollView, can_focus=True):
    """Shows the lines it is given that pass its filter; follows the tail until scrolled up."""

    # Each stream's and app's colour is a component class: a theme or a layout's .tcss restyles
    # them; the palette is distinct and readable on dark and light backgrounds.
    COMPONENT_CLASSES = {
        *(f"log-view--{stream.value}" for stream in LogStream),
        *(f"log-view--app-{i}" for i in range(APP_PALETTE_SIZE)),
        "log-view--error",
        "log-view--dim",
    }

    DEFAULT_CSS = """
    LogView {
        height: 1fr;
        background: $surface;
    }
    LogView > .log-view--stderr { color: #ff6e6e; }
    LogView > .log-view--request { color: #9ecbff; }
    LogView > .log-view--build { color: #e0c060; }
    LogView > .log-view--system { color: #8fbc8f; text-style: italic; }
    LogView > .log-view--pod { color: #c0c0c0; }
    LogView > .log-view--error { color: #ff5f5f; text-style: bold; }
    LogView > .log-view--dim { text-style: dim; }
    LogView > .log-view--app-0 { color: #5fafff; text-style: bold; }
    LogView > .log-view--app-1 { color: #d7875f; text-style: bold; }
    LogView > .log-view--app-2 { color: #87d787; text-style: bold; }
    LogView > .log-view--app-3 { color: #d787d7; text-style: bold; }
    LogView > .log-view--app-4 { color: #d7d75f; text-style: bold; }
    LogView > .log-view--app-5 { color: #5fd7d7; text-style: bold; }
    LogView > .log-view--app-6 { color: #ff8787; text-style: bold; }
    LogView > .log-view--app-7 { color: #afafff; text-style: bold; }
    """

    BINDINGS = [
        Binding("end,G", "follow", "Follow tail", show=False),
        Binding("home,g", "scroll_home", "Top", show=False),
    ]

    def __init__(
        self,
        *,
        max_lines: int = DEFAULT_MAX_LINES,
        tz: timezone | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._lines: deque[LogLine] = deque(maxlen=max_lines)
        self._strips: LRUCache[int, Strip] = LRUCache(_STRIP_CACHE_SIZE)
        self._widest = 0
        self._tz = tz
        self.filter = LogFilter()
        self.following = True
        self.received = 0  # lines offered to append(), filtered or not: for the title and tests
        self._frame_style = Style()
        self._app_positions: dict[str, int] = {}
        self._styles: LogStyles | None = None  # read from the component classes when first drawn
        self._frame_width = 0

    # --- data in ------------------------------------------------------------------------------

    @property
    def max_lines(self) -> int:
        return self._lines.maxlen or 0

    @property
    def line_count(self) -> int:
        return len(self._lines)

    @property
    def lines(self) -> list[LogLine]:
        """A copy of the lines held (after filtering), oldest first."""
        return list(self._lines)

    def append(self, lines: Iterable[LogLine]) -> int:
        """Add the lines that pass the filter; returns how many were kept."""
        keep = [line for line in lines if self.filter.matches(line)]
        if not keep:
            return 0
        # Count lines pushed out of the front so a reader who scrolled up keeps looking at the
        # same lines instead of watching the text slide under the viewport.
        evicted = max(0, len(self._lines) + len(keep) - self.max_lines)
        self._lines.extend(keep)
        self._widest = max(self._widest, max(self._width_of(line) for line in keep))
        self._after_change(evicted)
        return len(keep)

    def replace(self, lines: Iterable[LogLine]) -> None:
        """Start over with ``lines`` (already in order): used when the filter changes."""
        self._lines.clear()
        self._strips.clear()
        self._widest = 0
        self.following = True
        self.append(lines)
        self._after_change(0)

    def clear(self) -> None:
        self.replace(())

    def set_filter(self, log_filter: LogFilter, source: Iterable[LogLine]) -> None:
        """Apply a new filter to ``source`` (the store's recent lines) and show the result."""
        self.filter = log_filter
        self.replace(source)

    def set_apps(self, apps: Iterable[str]) -> None:
        """Give each known app its own colour (called when the set of apps changes)."""
        positions = app_positions(apps)
        if positions != self._app_positions:
            self._app_positions = positions
            self._strips.clear()
            self.refresh()

    def note_received(self, count: int) -> None:
        self.received += count

    # --- scrolling ----------------------------------------------------------------------------

    def action_follow(self) -> None:
        self.following = True
        self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # The user scrolling up stops following; scrolling back to the bottom resumes it.
        if new_value < old_value:
            self.following = new_value >= self.max_scroll_y
        elif new_value >= self.max_scroll_y:
            self.following = True

    def on_resize(self) -> None:
        # Lines that arrived before the first layout (or a layout switch) must still end up with
        # the tail in view.
        if self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def _after_change(self, evicted: int) -> None:
        self.virtual_size = Size(self._widest, len(self._lines))
        if self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        elif evicted:
            self.set_scroll(None, max(0.0, self.scroll_y - evicted))
        self.refresh()

    def _width_of(self, line: LogLine) -> int:
        # Prefix (time, app, stream) plus the text; exact enough for the horizontal scrollbar.
        return 31 + len(line.text)

    # --- rendering ----------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()
        self._styles = None

    def _log_styles(self) -> LogStyles:
        if self._styles is not None:
            return self._styles
        names = [*(f"log-view--{stream.value}" for stream in LogStream)]
        names += [f"log-view--app-{i}" for i in range(APP_PALETTE_SIZE)] + ["log-view--error", "log-view--dim"]
        found = {name: component_style(self, name) for name in names}
        style = {name: found[name] or Style() for name in names}
        styles = LogStyles(
            streams={stream: style[f"log-view--{stream.value}"] for stream in LogStream},
            apps=tuple(style[f"log-view--app-{i}"] for i in range(APP_PALETTE_SIZE)),
            error=style["log-view--error"],
            dim=style["log-view--dim"],
        )
        if all(s is not None for s in found.values()):  # mid-restyle: drawn plain, not kept
            self._styles = styles
        return styles

    def render_lines(self, crop: Region) -> list[Strip]:
        # The widget's style and width are the same for every row of a frame; computing them
        # per row (rich_style walks the ancestors) was most of the cost of a frame in a flood.
        self._frame_style = self.rich_style
        self._frame_width = self.scrollable_content_region.width
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self._frame_width
        rich_style = self._frame_style
        if index >= len(self._lines):
            return Strip.blank(width, rich_style)
        strip = self._strip(index, rich_style)
        return strip.crop_extend(scroll_x, scroll_x + width, rich_style)

    def _strip(self, index: int, rich_style: Style) -> Strip:
        line = self._lines[index]
        # Keyed by the buffer's sequence number, not the row, so evictions at the front do not
        # invalidate the cache; lines that never went through a LogBuffer (seq 0) are not cached.
        strip = self._strips.get(line.seq) if line.seq else None
        if strip is not None:
            return strip
        styles = self._log_styles()
        segments, width = log_line_segments(line, rich_style, styles, self._tz, self._app_positions.get(line.app))
        strip = Strip(segments, width)
        if line.seq:
            self._strips[line.seq] = strip
        return strip
