"""The time-travel panel for the selected app: a banner while an older build serves, the kept
builds (newest first), the last replay's differences and the last load test.

Closed, it still shows the banner when the selected app is rolled back: an older build serving
must never be a surprise. ``h`` opens and closes the rest; a replay or load test finishing for
the selected app opens it, since the user just asked for that result.
"""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Label, Static

from devenv.kept_builds import ago, history_lines
from devenv.model import AppState, KeptBuild, LoadReport, ReplayReport
from devenv.ui.format import short_digest
from devenv.ui.widgets.component_style import component_style

KEYS_HINT = "b roll back · v replay · t load test · h close"
MAX_DIFF_LINES_SHOWN = 60


def rollback_banner(app: AppState, now: float) -> str:
    """'' unless an older kept build serves; else what serves, how old, and how to move on."""
    if app.rolled_back_at is None or not app.serving_digest:
        return ""
    kept = next((b for b in app.history if b.digest == app.serving_digest), None)
    built = f" ({ago(kept.built_at, now)})" if kept is not None else ""
    return f"⏪ {app.name}: rolled back to {short_digest(app.serving_digest)}…{built}; save to build again"


def history_text(builds: tuple[KeptBuild, ...], serving: str | None, now: float) -> Text:
    return Text("\n".join(history_lines(builds, serving, now, serving_mark="▶")))


def replay_text(report: ReplayReport | None, now: float, added: Style, removed: Style) -> Text:
    text = Text()
    if report is None:
        text.append("No replay yet (v sends the recorded requests to what serves now).")
        return text
    head = (
        f"Replay {ago(report.ts, now)} against {short_digest(report.serving_digest)}: "
        f"{len(report.differences)} of {report.replayed} differ"
    )
    if report.skipped:
        head += f", {report.skipped} skipped (body over the recording cap)"
    if report.unsafe_skipped:
        head += f", {report.unsafe_skipped} not sent (POST/PUT/DELETE/PATCH: `wasmdev replay --all-methods`)"
    text.append(head)
    shown = 0
    for d in report.differences:
        if shown >= MAX_DIFF_LINES_SHOWN:
            text.append(f"\n  … more differences: `wasmdev replay {report.app}` prints them all")
            break
        status = f"{d.recorded_status} → {d.replayed_status or 'no response'}"
        text.append(f"\n  {d.method} {d.target}  status {status}")
        if d.error:
            text.append(f"\n    {d.error}", removed)
        for line in (*d.header_changes, *d.body_diff.splitlines()):
            shown += 1
            style = added if line.startswith("+") and not line.startswith("+++") else None
            if line.startswith("-") and not line.startswith("---"):
                style = removed
            text.append(f"\n    {line}", style or "")
    return text


def load_text(report: LoadReport | None, running: bool) -> str:
    if running:
        return "Load test running… (the latency and CPU/memory graphs move with it)"
    if report is None:
        return "No load test yet (t: 10 s, 8 connections, on the recorded requests or the first URL)."
    return (
        f"Load test: {report.requests} requests to {report.url}, {report.connections} connection(s), "
        f"{report.duration_s:.1f}s: {report.requests_per_second:.1f} req/s, p50 {report.p50_ms:.1f} ms, "
        f"p95 {report.p95_ms:.1f} ms, p99 {report.p99_ms:.1f} ms, {report.errors} error(s)"
    )


class TimeTravelPanel(Vertical):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"timetravel--added", "timetravel--removed"}
    DEFAULT_CSS = """
    TimeTravelPanel {
        display: none;
        height: auto;
        max-height: 50%;
        border: round $accent;
        border-title-align: left;
        padding: 0 1;
    }
    TimeTravelPanel.-open, TimeTravelPanel.-rolled-back { display: block; }
    TimeTravelPanel.-rolled-back { border: heavy $warning; }
    TimeTravelPanel > .timetravel-banner { display: none; color: $warning; text-style: bold; }
    TimeTravelPanel.-rolled-back > .timetravel-banner { display: block; }
    TimeTravelPanel > VerticalScroll { display: none; height: auto; max-height: 20; }
    TimeTravelPanel.-open > VerticalScroll { display: block; }
    TimeTravelPanel .timetravel-heading { color: $text-muted; }
    TimeTravelPanel .timetravel--added { color: $success; }
    TimeTravelPanel .timetravel--removed { color: $error; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.app_name: str | None = None
        self._banner = Label("", classes="timetravel-banner")
        self._history = Static("", classes="timetravel-history")
        self._replay = Static("", classes="timetravel-replay")
        self._load = Static("", classes="timetravel-load")
        self._shown: tuple[object, ...] = ()

    def compose(self) -> ComposeResult:
        yield self._banner
        with VerticalScroll():
            yield Label(f"Kept builds, newest first   ({KEYS_HINT})", classes="timetravel-heading")
            yield self._history
            yield self._replay
            yield self._load

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    @property
    def banner_text(self) -> str:
        return str(self._banner.content)

    @property
    def body_text(self) -> str:
        return "\n".join(str(w.content) for w in (self._history, self._replay, self._load))

    def toggle(self) -> None:
        self.set_class(not self.is_open, "-open")

    def open(self) -> None:
        self.add_class("-open")

    def show(self, app: AppState | None, now: float) -> None:
        if app is None:
            self.app_name = None
            self.remove_class("-rolled-back")
            return
        banner = rollback_banner(app, now)
        self.set_class(bool(banner), "-rolled-back")
        # Ages move every second; the rest changes only with the state the panel shows.
        key = (app.name, app.history, app.serving_digest, app.replay, app.load, app.load_running, int(now))
        if key == self._shown:
            return
        self._shown = key
        self.app_name = app.name
        self.border_title = f"Time travel: {app.name}"
        self._banner.update(banner)
        self._history.update(history_text(app.history, app.serving_digest, now))
        added = component_style(self, "timetravel--added") or Style()
        removed = component_style(self, "timetravel--removed") or Style()
        self._replay.update(replay_text(app.replay, now, added, removed))
        self._load.update(load_text(app.load, app.load_running))
