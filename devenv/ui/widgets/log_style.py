"""How a log line looks: a colour per app (stable across sessions) and a style per stream."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import datetime, timezone
from functools import lru_cache

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style

from devenv.model import LogLine, LogStream

# Distinct, readable on dark and light themes; an app keeps its colour because the index comes
# from a CRC of its name (Python's hash() is salted per process).
APP_PALETTE = (
    "#5fafff",
    "#d7875f",
    "#87d787",
    "#d787d7",
    "#d7d75f",
    "#5fd7d7",
    "#ff8787",
    "#afafff",
)

STREAM_STYLES: dict[LogStream, Style] = {
    LogStream.STDOUT: Style(),
    LogStream.STDERR: Style(color="#ff6e6e"),
    LogStream.REQUEST: Style(color="#9ecbff"),
    LogStream.BUILD: Style(color="#e0c060"),
    LogStream.SYSTEM: Style(color="#8fbc8f", italic=True),
    LogStream.POD: Style(color="#c0c0c0"),
}
STREAM_TAGS: dict[LogStream, str] = {
    LogStream.STDOUT: "out",
    LogStream.STDERR: "err",
    LogStream.REQUEST: "req",
    LogStream.BUILD: "bld",
    LogStream.SYSTEM: "sys",
    LogStream.POD: "pod",
}
DIM = Style(dim=True)
ERROR_LEVEL = Style(color="#ff5f5f", bold=True)
APP_COLUMN = 12  # wide enough for most app names; longer ones are cut with "…"


def app_color(app: str) -> str:
    return APP_PALETTE[zlib.crc32(app.encode()) % len(APP_PALETTE)]


def clock_text(ts: float, tz: timezone | None = None) -> str:
    """HH:MM:SS.mmm in local time (or ``tz``: the screenshot fixes UTC so it is reproducible)."""
    moment = datetime.fromtimestamp(ts, tz)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def app_styles(apps: Iterable[str]) -> dict[str, Style]:
    """Distinct colours for the apps of a workspace, by their sorted position.

    Within a session, apps keep their colour; the CRC fallback (for an app not yet in the state)
    is stable but can collide, which the positional assignment avoids for known apps.
    """
    return {
        app: Style(color=APP_PALETTE[i % len(APP_PALETTE)], bold=True) for i, app in enumerate(sorted(apps))
    }


def log_line_segments(
    line: LogLine, base: Style, tz: timezone | None = None, app_style: Style | None = None
) -> tuple[list[Segment], int]:
    """The line as styled segments over ``base`` (the widget's style), and its width in cells.

    Segments are built directly rather than through rich.Text: a flood renders every visible
    row each frame, and Text's span bookkeeping cost more than everything else in the frame.
    """
    name = line.app if len(line.app) <= APP_COLUMN else line.app[: APP_COLUMN - 1] + "…"
    stream_style = STREAM_STYLES.get(line.stream, _PLAIN)
    if line.level == "error":
        stream_style = stream_style + ERROR_LEVEL
    # Tabs and carriage returns from guest output would break the cell arithmetic of the row.
    body = line.text.expandtabs(4).replace("\r", "")
    prefix = f"{clock_text(line.ts, tz)} "
    tag = f" {STREAM_TAGS.get(line.stream, line.stream.value[:3])} "
    segments = [
        Segment(prefix, base + DIM),
        Segment(name.ljust(APP_COLUMN), base + (app_style or _app_style(line.app))),
        Segment(tag, base + DIM),
        Segment(body, base + stream_style),
    ]
    width = len(prefix) + max(APP_COLUMN, cell_len(name)) + len(tag) + cell_len(body)
    return segments, width


_PLAIN = Style()


@lru_cache(maxsize=256)
def _app_style(app: str) -> Style:
    return Style(color=app_color(app), bold=True)
