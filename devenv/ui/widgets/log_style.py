"""How a log line looks: a colour per app (stable across sessions) and a style per stream."""

from __future__ import annotations

import zlib
from datetime import datetime, timezone

from rich.style import Style
from rich.text import Text

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


def render_log_line(line: LogLine, tz: timezone | None = None) -> Text:
    text = Text(no_wrap=True, end="")
    text.append(clock_text(line.ts, tz), DIM)
    text.append(" ")
    name = line.app if len(line.app) <= APP_COLUMN else line.app[: APP_COLUMN - 1] + "…"
    text.append(name.ljust(APP_COLUMN), Style(color=app_color(line.app), bold=True))
    text.append(" ")
    text.append(STREAM_TAGS.get(line.stream, line.stream.value[:3]), DIM)
    text.append(" ")
    style = STREAM_STYLES.get(line.stream, Style())
    if line.level == "error":
        style = style + ERROR_LEVEL
    # Tabs and control characters from guest output would break the cell arithmetic of the line.
    text.append(line.text.expandtabs(4).replace("\r", ""), style)
    return text
