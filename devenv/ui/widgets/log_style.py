"""How a log line looks: a colour per app (stable across sessions) and a style per stream."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style

from devenv.model import LogLine, LogStream

STREAM_TAGS: dict[LogStream, str] = {
    LogStream.STDOUT: "out",
    LogStream.STDERR: "err",
    LogStream.REQUEST: "req",
    LogStream.BUILD: "bld",
    LogStream.SYSTEM: "sys",
    LogStream.POD: "pod",
}
APP_COLUMN = 12  # wide enough for most app names; longer ones are cut with "…"
APP_PALETTE_SIZE = 8  # app colours (LogView's log-view--app-N component classes)


@dataclass(frozen=True)
class LogStyles:
    """What a row is drawn with: the widget reads these from its CSS component classes (so a
    theme or a layout's .tcss can restyle them) and hands them to ``log_line_segments``."""

    streams: Mapping[LogStream, Style]
    apps: tuple[Style, ...]  # the app palette; an app's place in it comes from app_positions
    error: Style
    dim: Style

    def app(self, position: int) -> Style:
        return self.apps[position % len(self.apps)]


def app_positions(apps: Iterable[str]) -> dict[str, int]:
    """Distinct palette positions for the apps of a workspace, by their sorted order: within a
    session apps keep their colour, and known apps never collide (the CRC of ``crc_position``,
    for an app not yet in the state, is stable but can)."""
    return {app: i for i, app in enumerate(sorted(apps))}


def crc_position(app: str) -> int:
    """A stable palette position for any app name (Python's hash() is salted per process)."""
    return zlib.crc32(app.encode()) % APP_PALETTE_SIZE


def clock_text(ts: float, tz: timezone | None = None) -> str:
    """HH:MM:SS.mmm in local time (or ``tz``: the screenshot fixes UTC so it is reproducible)."""
    moment = datetime.fromtimestamp(ts, tz)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def log_line_segments(
    line: LogLine, base: Style, styles: LogStyles, tz: timezone | None = None, app_position: int | None = None
) -> tuple[list[Segment], int]:
    """The line as styled segments over ``base`` (the widget's style), and its width in cells.

    Segments are built directly rather than through rich.Text: a flood renders every visible
    row each frame, and Text's span bookkeeping cost more than everything else in the frame.
    """
    name = line.app if len(line.app) <= APP_COLUMN else line.app[: APP_COLUMN - 1] + "…"
    stream_style = styles.streams.get(line.stream, _PLAIN)
    if line.level == "error":
        stream_style = stream_style + styles.error
    # Tabs and carriage returns from guest output would break the cell arithmetic of the row.
    body = line.text.expandtabs(4).replace("\r", "")
    prefix = f"{clock_text(line.ts, tz)} "
    tag = f" {STREAM_TAGS.get(line.stream, line.stream.value[:3])} "
    segments = [
        Segment(prefix, base + styles.dim),
        Segment(name.ljust(APP_COLUMN), base + styles.app(app_position if app_position is not None else crc_position(line.app))),
        Segment(tag, base + styles.dim),
        Segment(body, base + stream_style),
    ]
    width = len(prefix) + max(APP_COLUMN, cell_len(name)) + len(tag) + cell_len(body)
    return segments, width


_PLAIN = Style()
