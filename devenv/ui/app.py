"""The dashboard: a Textual app over the store.

It reads ``store.state`` and the store's bounded buffers and dispatches user intents back; it never
runs builds, talks to a cluster or executes wasm. The store calls subscribers on the engine's
thread, so the subscriber here only raises flags; a 10 Hz timer on the UI's loop reads what is new
(``logs.since(checkpoint)``) and updates the widgets in one batch. A flood of log lines therefore
costs one deque extend per tick, and a key press never waits behind thousands of messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timezone
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Vertical
from textual.widgets import Footer, Input

from devenv.model import EngineState, LogLine, LogStream
from devenv.store import Store
from devenv.store import actions as a
from devenv.ui.app_rows import columns_for, rows_for
from devenv.ui.commands import WasmdevCommands
from devenv.ui.intents import IntentActions
from devenv.ui.layouts import (
    DEFAULT_LAYOUT,
    LayoutCatalog,
    UnknownLayout,
    discover_layouts,
    validate_layout,
)
from devenv.ui.log_filter import LogFilter
from devenv.ui.widgets.apps_table import AppsTable
from devenv.ui.widgets.bootstrap import BootstrapPanel
from devenv.ui.widgets.build_error import BuildErrorPanel, failing_app
from devenv.ui.widgets.filter_input import FilterInput
from devenv.ui.widgets.graphs import LatencyGraph, ResourceGraph
from devenv.ui.widgets.log_view import LogView
from devenv.ui.widgets.status_bar import StatusBar, status_text
from devenv.ui.widgets.timetravel import TimeTravelPanel

REFRESH_HZ = 10.0
GRAPH_INTERVAL_S = 1.0  # the graphs' window slides once a second; faster redraws say nothing new
GRAPH_MIN_INTERVAL_S = 0.25  # new requests redraw sooner, but a request flood cannot redraw every tick
LATENCY_BUCKETS = 60
LATENCY_BUCKET_S = 1.0
RESOURCE_WINDOW_S = 300.0
SYSTEM_SOURCE = "wasmdev"  # the "app" of lines the dashboard writes itself


class WasmdevApp(IntentActions, App[None]):
    TITLE = "wasmdev"
    COMMANDS = App.COMMANDS | {WasmdevCommands}

    # App-level defaults only; everything about arrangement lives in the layout files, which are
    # user CSS and so take precedence over these.
    DEFAULT_CSS = """
    #status { height: 1; background: $panel; padding: 0 1; }
    #main { height: 1fr; }
    #left, #graphs { height: 1fr; }
    #logs-panel { height: 1fr; border: round $panel-lighten-2; border-title-align: left; }
    #logs-panel:focus-within { border: round $accent; }
    #apps { border: round $panel-lighten-2; }
    #apps:focus { border: round $accent; }
    #log-filter { display: none; height: 3; }
    #logs-panel.-filtering #log-filter { display: block; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "rebuild_selected", "Rebuild"),
        Binding("R", "rebuild_all", "Rebuild all"),
        Binding("p", "toggle_watch", "Pause/resume"),
        Binding("s", "restart_selected", "Restart"),
        Binding("c", "clear_logs", "Clear logs"),
        Binding("slash", "filter_logs", "Filter"),
        Binding("a", "only_selected_app", "Only this app"),
        Binding("l", "cycle_layout", "Layout"),
        Binding("o", "open_url", "Open URL"),
        Binding("y", "copy_url", "Copy URL", show=False),
        Binding("q", "quit", "Quit"),
        # Time travel: not in the footer (it is full); the panel (h) and the palette list them.
        Binding("h", "toggle_timetravel", "Time travel", show=False),
        Binding("b", "roll_back_selected", "Roll back", show=False),
        Binding("v", "replay_selected", "Replay", show=False),
        Binding("t", "load_test_selected", "Load test", show=False),
    ]

    def __init__(
        self,
        store: Store,
        *,
        layout: str = DEFAULT_LAYOUT,
        workspace: Path | None = None,
        layouts: LayoutCatalog | None = None,
        clock: Callable[[], float] = time.time,
        tz: timezone | None = None,
        refresh_hz: float = REFRESH_HZ,
    ) -> None:
        super().__init__()
        self.store = store
        self.workspace = workspace
        # Given when the caller already read them (to refuse an unknown --layout up front).
        self.layouts: LayoutCatalog = layouts or discover_layouts(workspace)
        self.layout_name = ""
        self._layout_origin: str | None = None
        # Installed before the first styling pass, so startup styles the screen once, not twice.
        self._startup_problems = list(self.layouts.problems)
        problem = self._install_layout(layout)
        if problem is not None:
            self._startup_problems.append(problem)
            if layout != DEFAULT_LAYOUT:
                self._install_layout(DEFAULT_LAYOUT)
        self._clock = clock
        self._tz = tz
        self._refresh_interval = 1.0 / refresh_hz
        self.selected_app: str | None = None
        self._query_filter = LogFilter()
        self._only_app = False
        self._checkpoint = 0
        # Raised by the store subscriber on the engine's thread, lowered by the UI's timer.
        # Plain attribute writes are atomic under the GIL, and a missed race only delays one tick.
        self._state_dirty = True
        self._metrics_dirty = True
        self._logs_cleared = False
        self._timetravel_result = False  # a replay or load test finished: show its result
        self._seen_generation = -1
        self._last_state_refresh = float("-inf")
        self._last_graph_refresh = float("-inf")
        self.shutdown_dispatched = False
        self._shutdown_seen = False
        self._unsubscribe: Callable[[], None] | None = None
        self._status_shown: Text | None = None

    # --- structure ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Widgets are kept as attributes: the timer must reach them even while another screen
        # (the command palette) is on top, where app.query_one would look.
        self._status = StatusBar("", id="status")
        self._bootstrap = BootstrapPanel(id="bootstrap")
        self._build_error = BuildErrorPanel(id="build-error")
        self._timetravel = TimeTravelPanel(id="timetravel")
        self._table = AppsTable(id="apps")
        self._logs_panel = Vertical(id="logs-panel")
        self._log_view = LogView(id="logs", tz=self._tz)
        self._filter_input = FilterInput(
            placeholder="text to find, app:NAME for one app; Enter keeps, Esc clears", id="log-filter"
        )
        self._latency = LatencyGraph(id="latency")
        self._resources = (ResourceGraph("cpu", id="cpu"), ResourceGraph("memory", id="memory"))
        yield self._status
        yield self._bootstrap
        yield self._build_error
        yield self._timetravel
        with Container(id="main"):
            with Vertical(id="left"):
                yield self._table
                with self._logs_panel:
                    yield self._log_view
                    yield self._filter_input
            with Container(id="graphs"):
                yield self._latency
                yield from self._resources
        yield Footer()

    def on_mount(self) -> None:
        for problem in self._startup_problems:
            self.notify(problem, severity="warning", timeout=10)
        self._unsubscribe = self.store.subscribe(self._on_store_change)
        self.refresh_now()
        self.set_interval(self._refresh_interval, self.refresh_now, name="store-refresh")
        self._table.focus()

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    # --- store -> widgets -------------------------------------------------------------------------

    def _on_store_change(self, state: EngineState, action: a.Action) -> None:
        """Runs on whichever thread dispatched: flags only, no widget access."""
        if isinstance(action, a.LogEmitted):
            return  # the timer polls the log buffer's checkpoint; nothing to flag per line
        if isinstance(action, a.RequestServed | a.ResourceSampled):
            self._metrics_dirty = True
        elif isinstance(action, a.LogsCleared):
            self._logs_cleared = True
        elif isinstance(action, a.ShutdownRequested):
            self._shutdown_seen = True  # e.g. the engine got SIGTERM: the dashboard closes too
        else:
            self._state_dirty = True
            if isinstance(action, a.ReplayFinished | a.LoadTestFinished) and action.app == self.selected_app:
                self._timetravel_result = True
            if isinstance(action, a.MetricsUnavailable):
                self._metrics_dirty = True  # the resource graphs swap their numbers for the note

    def refresh_now(self) -> None:
        """Bring every widget up to date with the store (the timer's tick; tests call it directly).

        Throttling uses the monotonic clock; the injected ``clock`` only dates what is shown, so
        a frozen clock (screenshots, tests) still refreshes.
        """
        if self._shutdown_seen:
            self.shutdown_dispatched = True  # someone else already asked; don't ask twice
            self.exit()
            return
        now = self._clock()
        tick = time.monotonic()
        self._refresh_logs()
        state = self.store.state
        # Elapsed times and ages must move even when nothing is dispatched: once a second.
        if (
            self._state_dirty
            or state.generation != self._seen_generation
            or tick - self._last_state_refresh >= 1.0
        ):
            self._refresh_state(state, now)
        since_graphs = tick - self._last_graph_refresh
        if (self._metrics_dirty and since_graphs >= GRAPH_MIN_INTERVAL_S) or since_graphs >= GRAPH_INTERVAL_S:
            self._refresh_graphs(state, now)

    def _refresh_logs(self) -> None:
        view = self._log_view
        if self._logs_cleared:
            self._logs_cleared = False
            view.clear()
        chunk = self.store.logs.since(self._checkpoint, limit=view.max_lines)
        self._checkpoint = chunk.checkpoint
        if chunk.dropped:
            # Say so rather than silently splice: lines came faster than the view reads them
            # (more than a buffer's worth between two ticks), as Tilt's log store reports.
            gap = LogLine(
                self._clock(),
                SYSTEM_SOURCE,
                LogStream.SYSTEM,
                f"… {chunk.dropped} lines skipped (more arrived at once than the view holds)",
            )
            view.append([gap])
        if chunk.lines:
            view.note_received(len(chunk.lines) + chunk.dropped)
            view.append(chunk.lines)
        self._update_logs_title()

    def _refresh_state(self, state: EngineState, now: float) -> None:
        self._state_dirty = False
        self._seen_generation = state.generation
        self._last_state_refresh = time.monotonic()
        status = status_text(state, self.layout_name, self._status.warning_style)
        if status != self._status_shown:
            self._status_shown = status
            self._status.update(status)
        table = self._table
        table.show(rows_for(state, now), columns_for(state))
        self._log_view.set_apps(state.apps)
        if self.selected_app not in state.apps:
            self.selected_app = table.selected_app
        self._build_error.show(failing_app(state, self.selected_app), now)
        if self._timetravel_result:
            self._timetravel_result = False
            self._timetravel.open()
        self._timetravel.show(state.apps.get(self.selected_app) if self.selected_app else None, now)
        self._bootstrap.show(state.bootstrap, state.target, now)

    def _refresh_graphs(self, state: EngineState, now: float) -> None:
        self._metrics_dirty = False
        self._last_graph_refresh = time.monotonic()
        name = self.selected_app
        metrics = self.store.metrics
        latency = self._latency
        app_state = state.apps.get(name) if name is not None else None
        if name is None or app_state is None:
            latency.show(None, None, [], [], LATENCY_BUCKET_S)
            for graph in self._resources:
                graph.show(None, [], "", now, RESOURCE_WINDOW_S)
            return
        window = LATENCY_BUCKETS * LATENCY_BUCKET_S
        summary = metrics.latency(name, window_s=window, now=now)
        p50, p95 = metrics.latency_series(name, buckets=LATENCY_BUCKETS, bucket_s=LATENCY_BUCKET_S, now=now)
        latency.show(name, summary, p50, p95, LATENCY_BUCKET_S)
        samples = metrics.samples(name, window_s=RESOURCE_WINDOW_S, now=now)
        for graph in self._resources:
            graph.show(name, samples, app_state.metrics_note, now, RESOURCE_WINDOW_S)

    def _update_logs_title(self) -> None:
        view = self._log_view
        parts = ["Logs"]
        described = self._current_filter().describe()
        if described:
            parts.append(described)
        parts.append("following" if view.following else "scrolled (End follows)")
        title = " · ".join(parts)
        if self._logs_panel.border_title != title:  # setting it, even unchanged, repaints the panel
            self._logs_panel.border_title = title

    # --- selection and filtering ----------------------------------------------------------------

    def on_apps_table_app_selected(self, event: AppsTable.AppSelected) -> None:
        if event.app == self.selected_app:
            return
        self.selected_app = event.app
        if self._only_app:
            self._apply_filter()
        state, now = self.store.state, self._clock()
        self._build_error.show(failing_app(state, self.selected_app), now)
        self._timetravel.show(state.apps.get(event.app) if event.app else None, now)
        self._refresh_graphs(state, now)

    def _current_filter(self) -> LogFilter:
        only = self.selected_app if self._only_app else None
        return self._query_filter.with_only_app(only)

    def _apply_filter(self) -> None:
        """Re-read the store's recent lines through the new filter (the view keeps no unfiltered copy)."""
        view = self._log_view
        log_filter = self._current_filter()
        chunk = self.store.logs.since(0)
        matching = [line for line in chunk.lines if log_filter.matches(line)]
        self._checkpoint = chunk.checkpoint
        view.set_filter(log_filter, matching[-view.max_lines :])
        self._update_logs_title()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "log-filter":
            self._query_filter = LogFilter.parse(event.value)
            self._apply_filter()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "log-filter":
            if not event.value.strip():
                self._logs_panel.remove_class("-filtering")
            self._log_view.focus()

    def on_filter_input_dismissed(self, event: FilterInput.Dismissed) -> None:
        self._logs_panel.remove_class("-filtering")
        self._log_view.focus()

    # --- log and layout actions (they touch widgets; the store intents live in IntentActions) ---

    def action_toggle_timetravel(self) -> None:
        self._timetravel.toggle()
        state = self.store.state
        self._timetravel.show(state.apps.get(self.selected_app) if self.selected_app else None, self._clock())

    def action_clear_logs(self) -> None:
        self._dispatch(a.LogsCleared())
        self._logs_cleared = False
        self._log_view.clear()

    def action_filter_logs(self) -> None:
        self._logs_panel.add_class("-filtering")
        self._filter_input.focus()

    def action_only_selected_app(self) -> None:
        self._only_app = not self._only_app
        self._apply_filter()

    def action_cycle_layout(self) -> None:
        self.switch_layout(self.layouts.next_after(self.layout_name))

    # --- layouts ------------------------------------------------------------------------------------

    def switch_layout(self, name: str) -> bool:
        """Apply a layout by name; False (and a notification saying why) if it is unknown or broken.

        Layouts are swapped by replacing one source in the app's stylesheet and re-applying it,
        not by toggling classes over rules loaded up front: a layout file is then plain Textual
        CSS (``#logs-panel { height: 3fr; }``), exactly what a user would write in their own
        ``layouts/NAME.tcss``, with no selector prefix to remember and no way for one layout's
        rules to leak into another. The cost is parsing one small file and one restyle pass,
        which a class toggle on the screen would trigger anyway.
        """
        problem = self._install_layout(name)
        if problem is not None:
            self.notify(problem, severity="error", timeout=10)
            return False
        # Not App.refresh_css(): that re-parses every widget's default CSS in a fresh stylesheet
        # (its parse cache is per instance). parse() here re-parses only the changed source,
        # which keeps a layout switch cheap even while a log flood competes for the CPU.
        self.stylesheet.parse()
        self.stylesheet.update(self, animate=False)
        self.screen.refresh(layout=True)
        self._state_dirty = True
        self._metrics_dirty = True
        return True

    def _install_layout(self, name: str) -> str | None:
        """Put the layout's CSS in the stylesheet (without re-applying it); the problem, or None."""
        try:
            layout = self.layouts.require(name)
        except UnknownLayout as err:
            return str(err)
        problem = validate_layout(layout, self.get_css_variables())
        if problem is not None:
            return problem
        sheet = self.stylesheet
        if self._layout_origin is not None:
            sheet.source.pop((self._layout_origin, ""), None)
        sheet.add_source(layout.css, read_from=(layout.origin, ""))
        self._layout_origin = layout.origin
        self.layout_name = name
        return None


__all__ = ["UnknownLayout", "WasmdevApp", "run_dashboard"]


def run_dashboard(
    store: Store,
    *,
    layout: str = DEFAULT_LAYOUT,
    workspace: Path | None = None,
    layouts: LayoutCatalog | None = None,
) -> None:
    """Run the dashboard until the user quits; ShutdownRequested is dispatched either way.

    An unknown ``layout`` raises UnknownLayout before anything starts."""
    catalog = layouts or discover_layouts(workspace)
    catalog.require(layout)
    app = WasmdevApp(store, layout=layout, workspace=workspace, layouts=catalog)
    try:
        app.run()
    finally:
        app.request_shutdown()
