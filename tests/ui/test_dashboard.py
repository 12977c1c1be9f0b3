"""Pilot tests: dispatch actions into a Store, drive keys, and check what the widgets hold."""

from __future__ import annotations

import threading

from textual import events
from textual.widgets import Static

from devenv.model import LogLine, LogStream, PodState, ResourceSample, StepState, StepStatus
from devenv.store import Store
from devenv.store import actions as a
from devenv.ui.widgets.apps_table import AppsTable
from devenv.ui.widgets.bootstrap import BootstrapPanel
from devenv.ui.widgets.build_error import BuildErrorPanel
from devenv.ui.widgets.graphs import LatencyGraph, ResourceGraph
from devenv.ui.widgets.log_view import LogView
from tests.ui.helpers import NOW, SIZE, Recorder, make_app, serve, spec, wait_until


def cell(table: AppsTable, row: int, column: str) -> str:
    return str(table.get_row_at(row)[table.columns_shown.index(column)])


async def test_an_app_appears_through_the_refresh_timer() -> None:
    store = Store()
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(AppsTable)
        assert table.row_count == 0
        store.dispatch(a.AppLoaded(spec("web")))
        # No explicit refresh: the 10 Hz timer must pick the change up on its own.
        assert await wait_until(pilot, lambda: table.row_count == 1)
        assert cell(table, 0, "app") == "web"
        assert cell(table, 0, "build") == "idle"
        assert app.selected_app == "web"


async def test_apps_row_shows_build_progress_digest_url_and_edit_to_serving() -> None:
    store = Store()
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        store.dispatch(a.AppLoaded(spec("web")))
        store.dispatch(a.BuildStarted("web", "make", NOW - 3.0))
        app.refresh_now()
        await pilot.pause()
        table = app.query_one(AppsTable)
        assert cell(table, 0, "build") == "building 3.0s"
        serve(store, "web", "sha256:" + "ab" * 32, NOW - 65)
        app.refresh_now()
        await pilot.pause()
        assert cell(table, 0, "build").startswith("ok")
        assert cell(table, 0, "digest") == "abababababab"
        assert cell(table, 0, "age") == "1m"
        assert cell(table, 0, "url") == "127.0.0.1:3000/"
        assert cell(table, 0, "e2s") == "850 ms"
        assert "pods" not in table.columns_shown  # local target: no pods column at all
        # The row was first drawn with "—" placeholders: columns must widen to what they now hold,
        # or the URL reads "127" (seen in a real session).
        for key, text in (
            ("url", "127.0.0.1:3000/"),
            ("build", cell(table, 0, "build")),
            ("digest", "abababababab"),
        ):
            assert table.columns[key].get_render_width(table) >= len(text) + 2 * table.cell_padding


async def test_component_rows_and_cluster_pods() -> None:
    store = Store()
    store.dispatch(a.WorkspaceLoaded(root=spec("x").root, target="k3d"))
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        store.dispatch(a.AppLoaded(spec("shop", ("api", "static"))))
        store.dispatch(
            a.PodsObserved(
                "shop",
                (
                    PodState("shop-1", "Running", True, 0),
                    PodState("shop-2", "Pending", False, 3, "CrashLoopBackOff"),
                ),
            )
        )
        app.refresh_now()
        await pilot.pause()
        table = app.query_one(AppsTable)
        assert table.row_count == 3  # the app and its two components
        assert "api" in cell(table, 1, "app") and "static" in cell(table, 2, "app")
        assert cell(table, 0, "pods") == "1/2 ↻3 CrashLoopBackOff"


async def test_build_failure_opens_panel_and_next_success_closes_it() -> None:
    store = Store()
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        store.dispatch(a.AppLoaded(spec("web")))
        serve(store, "web", "sha256:" + "11" * 32, NOW - 120)
        app.refresh_now()
        await pilot.pause()
        panel = app.query_one(BuildErrorPanel)
        assert not panel.is_open and not panel.display

        store.dispatch(a.BuildStarted("web", "cargo build --release", NOW - 5))
        store.dispatch(
            a.BuildFailed(
                "web",
                "cargo build --release",
                "error[E0308]: mismatched types\n  --> src/lib.rs:4:5",
                "cargo failed",
                NOW - 2,
            )
        )
        assert await wait_until(pilot, lambda: panel.is_open)
        assert panel.display
        assert panel.app_name == "web"
        assert panel.command == "cargo build --release"
        assert "error[E0308]: mismatched types" in panel.output
        serving = panel.serving_text
        assert "Still serving" in serving and "111111111111" in serving

        store.dispatch(a.BuildStarted("web", "cargo build --release", NOW - 1))
        store.dispatch(
            a.BuildSucceeded(
                "web",
                __import__("devenv.model").model.BuiltApp(spec("web"), "sha256:" + "22" * 32, {}, NOW),
                NOW,
            )
        )
        store.dispatch(a.VersionServing("web", "sha256:" + "22" * 32, ("http://127.0.0.1:3000/",), NOW))
        assert await wait_until(pilot, lambda: not panel.is_open)
        assert not panel.display


async def test_filter_narrows_logs_by_text_and_by_app() -> None:
    store = Store()
    for name in ("web", "api"):
        store.dispatch(a.AppLoaded(spec(name)))
    for i in range(30):
        name = "web" if i % 2 else "api"
        text = f"request {i} timeout" if i % 5 == 0 else f"request {i} ok"
        store.dispatch(a.LogEmitted(LogLine(NOW - 30 + i, name, LogStream.STDOUT, text)))
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(LogView)
        assert await wait_until(pilot, lambda: view.line_count == 30)

        await pilot.press("slash", *"timeout")
        assert await wait_until(pilot, lambda: view.line_count == 6)
        assert all("timeout" in line.text for line in view.lines)

        await pilot.press(*" app:api")
        assert await wait_until(
            pilot, lambda: view.line_count == 3 and {line.app for line in view.lines} == {"api"}
        )

        # Lines that arrive later go through the same filter.
        store.dispatch(a.LogEmitted(LogLine(NOW, "api", LogStream.STDERR, "late timeout")))
        store.dispatch(a.LogEmitted(LogLine(NOW, "web", LogStream.STDERR, "late timeout elsewhere")))
        assert await wait_until(pilot, lambda: view.line_count == 4)
        assert view.lines[-1].text == "late timeout"

        await pilot.press("escape")  # clears the filter and goes back to the logs
        assert await wait_until(pilot, lambda: view.line_count == 32)
        assert app.focused is view


async def test_only_selected_app_key_follows_the_selection() -> None:
    store = Store()
    for name in ("api", "web"):
        store.dispatch(a.AppLoaded(spec(name)))
        for i in range(5):
            store.dispatch(a.LogEmitted(LogLine(NOW + i, name, LogStream.STDOUT, f"{name} line {i}")))
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(LogView)
        assert await wait_until(pilot, lambda: view.line_count == 10)
        assert app.selected_app == "api"
        await pilot.press("a")
        assert await wait_until(pilot, lambda: view.line_count == 5)
        assert {line.app for line in view.lines} == {"api"}
        app.query_one(AppsTable).focus()
        await pilot.press("down")
        assert await wait_until(pilot, lambda: {line.app for line in view.lines} == {"web"})
        await pilot.press("a")
        assert await wait_until(pilot, lambda: view.line_count == 10)


async def test_log_view_follows_tail_until_scrolled_up() -> None:
    store = Store()
    store.dispatch(a.AppLoaded(spec("web")))
    for i in range(200):
        store.dispatch(a.LogEmitted(LogLine(NOW + i, "web", LogStream.STDOUT, f"line {i}")))
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(LogView)
        assert await wait_until(
            pilot, lambda: view.line_count == 200 and view.scroll_y == view.max_scroll_y > 0
        )
        view.focus()
        await pilot.press("pageup")
        # Page-up animates: take the position once the animation has ended, not mid-way.
        assert await wait_until(
            pilot, lambda: not view.following and not app.animator.is_being_animated(view, "scroll_y")
        )
        held = view.scroll_y
        store.dispatch(a.LogEmitted(LogLine(NOW + 500, "web", LogStream.STDOUT, "new")))
        assert await wait_until(pilot, lambda: view.line_count == 201)
        await pilot.pause()
        assert view.scroll_y == held  # scrolled-up readers are not dragged to the bottom
        await pilot.press("end")
        assert await wait_until(pilot, lambda: view.following and view.scroll_y == view.max_scroll_y)


async def test_clear_logs_key_empties_the_view_and_dispatches_the_intent() -> None:
    store = Store()
    recorder = Recorder(store)
    store.dispatch(a.LogEmitted(LogLine(NOW, "web", LogStream.STDOUT, "hello")))
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(LogView)
        assert await wait_until(pilot, lambda: view.line_count == 1)
        await pilot.press("c")
        assert await wait_until(pilot, lambda: view.line_count == 0)
        assert a.LogsCleared() in recorder.actions
        store.dispatch(a.LogEmitted(LogLine(NOW, "web", LogStream.STDOUT, "after")))
        assert await wait_until(pilot, lambda: [line.text for line in view.lines] == ["after"])


async def test_keys_dispatch_intents_for_the_selected_app() -> None:
    store = Store()
    recorder = Recorder(store)
    store.dispatch(a.AppLoaded(spec("web")))
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_until(pilot, lambda: app.selected_app == "web")
        await pilot.press("r", "R", "s", "p")
        assert await wait_until(pilot, lambda: len(recorder.actions) == 4)
        assert recorder.actions == [
            a.RebuildRequested("web"),
            a.RebuildRequested(None),
            a.RestartRequested("web"),
            a.WatchPaused(),
        ]
        assert await wait_until(pilot, lambda: "paused" in str(app.query_one("#status", Static).content))
        await pilot.press("p")  # the reducer recorded the pause, so the same key resumes
        assert await wait_until(pilot, lambda: recorder.actions[-1] == a.WatchResumed())
        await pilot.press("q")
        assert await wait_until(pilot, lambda: recorder.actions[-1] == a.ShutdownRequested())
    assert app.return_code == 0


async def test_graphs_show_latency_and_resources_of_the_selected_app() -> None:
    store = Store()
    store.dispatch(a.AppLoaded(spec("web")))
    from devenv.model import RequestRecord

    for i in range(100):
        store.dispatch(
            a.RequestServed(RequestRecord(NOW - 50 + i * 0.5, "web", "main", "GET", "/", 200, 1.0 + i % 10))
        )
    for i in range(10):
        store.dispatch(a.ResourceSampled(ResourceSample(NOW - 20 + i * 2, "web", 12.5, 3 * 1024 * 1024)))
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        latency = app.query_one(LatencyGraph)
        cpu = app.query_one("#cpu", ResourceGraph)
        memory = app.query_one("#memory", ResourceGraph)
        assert await wait_until(pilot, lambda: "web" in latency.title_text)
        summary = store.metrics.latency("web", 60.0, NOW)
        assert f"p50 {summary.p50_ms:.1f} ms" in latency.title_text
        assert f"p95 {summary.p95_ms:.0f} ms" in latency.title_text
        assert "12.5 %" in cpu.title_text
        assert "3.0 MiB" in memory.title_text
        assert not cpu.note_text

        store.dispatch(a.MetricsUnavailable("web", "metrics.k8s.io is not served: install metrics-server"))
        # Graphs redraw at most every GRAPH_MIN_INTERVAL_S: on a fast machine the first redraw
        # above was less than that ago, so wait for the note rather than one tick.
        assert await wait_until(pilot, lambda: "install metrics-server" in cpu.note_text)
        assert "—" in cpu.title_text and "12.5" not in cpu.title_text  # no stale or zero number


async def test_bootstrap_steps_show_progress_until_all_done() -> None:
    store = Store()
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(BootstrapPanel)
        store.dispatch(
            a.BootstrapStepChanged(StepState("docker", "Check Docker", StepStatus.DONE, NOW - 9, NOW - 8))
        )
        store.dispatch(
            a.BootstrapStepChanged(StepState("cluster", "Create k3d cluster", StepStatus.RUNNING, NOW - 4))
        )
        store.dispatch(a.BootstrapStepChanged(StepState("shim", "Install the Spin shim")))
        assert await wait_until(pilot, lambda: panel.display)
        assert "1/3 steps done" in panel.title_text
        assert "Create k3d cluster  4.0s" in panel.text
        assert "○ Install the Spin shim" in panel.text

        store.dispatch(
            a.BootstrapStepChanged(
                StepState(
                    "cluster",
                    "Create k3d cluster",
                    StepStatus.FAILED,
                    detail="port 6443 in use",
                    fix="stop the other cluster",
                )
            )
        )
        assert await wait_until(pilot, lambda: "reason: port 6443 in use" in panel.text)
        assert "fix: stop the other cluster" in panel.text

        for key, title in (("cluster", "Create k3d cluster"), ("shim", "Install the Spin shim")):
            store.dispatch(a.BootstrapStepChanged(StepState(key, title, StepStatus.DONE, NOW - 1, NOW)))
        assert await wait_until(pilot, lambda: not panel.display)


async def test_clicking_an_app_row_selects_it_for_graphs_and_keys() -> None:
    store = Store()
    recorder = Recorder(store)
    for name in ("api", "web"):
        store.dispatch(a.AppLoaded(spec(name)))
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_until(pilot, lambda: app.selected_app == "api")
        # Row 2 of the table: below the border line and the header.
        await pilot.click(AppsTable, offset=(4, 3))
        assert await wait_until(pilot, lambda: app.selected_app == "web")
        assert await wait_until(pilot, lambda: "web" in app.query_one(LatencyGraph).title_text)
        await pilot.press("r")
        assert await wait_until(pilot, lambda: recorder.actions == [a.RebuildRequested("web")])


async def test_mouse_wheel_scrolls_logs_up_and_stops_following() -> None:
    store = Store()
    for i in range(300):
        store.dispatch(a.LogEmitted(LogLine(NOW + i, "web", LogStream.STDOUT, f"line {i}")))
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(LogView)
        assert await wait_until(pilot, lambda: view.line_count == 300 and view.scroll_y == view.max_scroll_y)
        bottom = view.scroll_y
        # Pilot has no wheel helper; its own mouse-event poster sends the wheel as a terminal would.
        await pilot._post_mouse_events([events.MouseScrollUp], LogView, offset=(5, 5), times=3)
        assert await wait_until(pilot, lambda: view.scroll_y < bottom)
        assert not view.following


async def test_shutdown_dispatched_elsewhere_closes_the_dashboard() -> None:
    store = Store()
    recorder = Recorder(store)
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        thread = threading.Thread(target=store.dispatch, args=(a.ShutdownRequested(),))
        thread.start()
        thread.join()
        assert await wait_until(pilot, lambda: app.return_code is not None)
    assert recorder.actions == [a.ShutdownRequested()]  # the UI did not ask a second time


async def test_build_error_panel_ages_its_serving_line_without_re_rendering_the_output() -> None:
    store = Store()
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        store.dispatch(a.AppLoaded(spec("web")))
        serve(store, "web", "sha256:" + "11" * 32, NOW - 120)
        store.dispatch(a.BuildFailed("web", "make", "error: x\n" * 500, "make failed", NOW - 2))
        panel = app.query_one(BuildErrorPanel)
        assert await wait_until(pilot, lambda: panel.is_open)
        renders: list[object] = []
        original = panel._output.update
        panel._output.update = lambda content="": renders.append(content) or original(content)  # type: ignore[method-assign]
        failed = store.state.apps["web"]
        panel.show(failed, NOW + 60)
        assert "(for 2m)" in panel.serving_text
        panel.show(failed, NOW + 120)
        assert "(for 3m)" in panel.serving_text  # the serving line moves on
        assert renders == []  # the same failed build: its output is not rendered again
