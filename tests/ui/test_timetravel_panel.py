"""The dashboard's time travel: keys and palette entries dispatch rollback, replay and load-test
intents for the selected app; the panel shows kept builds, a replay's differences and a load
test; an older build serving is said plainly (banner and status bar)."""

from __future__ import annotations

from rich.color import Color
from rich.text import Text
from textual.widgets import Static

from devenv.model import ExchangeDifference, KeptBuild, LoadReport, ReplayReport
from devenv.store import Store
from devenv.store import actions as a
from devenv.ui.commands import palette_commands
from devenv.ui.widgets.status_bar import StatusBar
from devenv.ui.widgets.timetravel import TimeTravelPanel
from tests.ui.helpers import NOW, SIZE, make_app, run_palette, serve, spec, wait_until

OLD = "sha256:" + "9a" * 32
NEW = "sha256:" + "c4" * 32
TT_INTENTS = (a.RollbackRequested, a.ReplayRequested, a.LoadTestRequested)


def store_with_history() -> Store:
    store = Store()
    store.dispatch(a.AppLoaded(spec("web")))
    serve(store, "web", OLD, NOW - 300, port=3007)
    serve(store, "web", NEW, NOW - 20, port=3007)
    builds = (
        KeptBuild("web", NEW, NOW - 20, ("src/app.wat",), 412.0, True, NOW - 19.8),
        KeptBuild("web", OLD, NOW - 180, (), None, True, NOW - 299.8),
    )
    store.dispatch(a.HistoryChanged("web", builds))
    return store


def recorded(store: Store) -> list[a.Action]:
    seen: list[a.Action] = []
    store.subscribe(lambda _s, action: seen.append(action) if isinstance(action, TT_INTENTS) else None)
    return seen


async def test_keys_dispatch_time_travel_intents_for_the_selected_app() -> None:
    store = store_with_history()
    seen = recorded(store)
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_until(pilot, lambda: app.selected_app == "web")
        await pilot.press("b", "v", "t")
        assert await wait_until(pilot, lambda: len(seen) == 3)
        assert seen == [a.RollbackRequested("web"), a.ReplayRequested("web"), a.LoadTestRequested("web")]
        panel = app.query_one(TimeTravelPanel)
        assert not panel.is_open
        await pilot.press("h")
        assert await wait_until(pilot, lambda: panel.is_open and "9a9a9a9a9a9a" in panel.body_text)
        body = panel.body_text
        assert body.index("c4c4c4c4c4c4") < body.index("9a9a9a9a9a9a")  # newest first
        assert "src/app.wat" in body and "edit→serving 412 ms" in body


async def test_an_older_build_serving_is_shown_plainly_until_a_new_build_serves() -> None:
    store = store_with_history()
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_until(pilot, lambda: app.selected_app == "web")
        panel = app.query_one(TimeTravelPanel)
        assert not panel.has_class("-rolled-back")
        serve(store, "web", OLD, NOW - 5, port=3007)  # the rollback's deploy, as the engine sends it
        store.dispatch(a.RolledBack("web", OLD, NOW - 5))
        assert await wait_until(pilot, lambda: panel.has_class("-rolled-back"))
        assert panel.banner_text == "⏪ web: rolled back to 9a9a9a9a9a9a… (3m ago); save to build again"
        status = app.query_one("#status", Static)
        assert "rolled back: web" in str(status.content)
        assert isinstance(status, StatusBar) and isinstance(status.content, Text)
        # Styled by the theme's CSS (the warning colour, bold), not a colour named in Python.
        span = next(sp for sp in status.content.spans if "rolled back" in status.content.plain[sp.start : sp.end])
        assert span.style == status.warning_style
        assert status.warning_style.bold and status.warning_style.color is not None
        warning = Color.parse(app.current_theme.warning or "").triplet
        assert warning is not None and status.warning_style.color.triplet is not None
        assert all(abs(x - y) <= 2 for x, y in zip(status.warning_style.color.triplet, warning, strict=True))
        serve(store, "web", NEW, NOW, port=3007)  # the next save built anew
        assert await wait_until(pilot, lambda: not panel.has_class("-rolled-back"))
        assert "rolled back" not in str(app.query_one("#status", Static).content)


async def test_a_finished_replay_opens_the_panel_with_its_differences_and_load_figures() -> None:
    store = store_with_history()
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_until(pilot, lambda: app.selected_app == "web")
        difference = ExchangeDifference(
            "1-000004",
            "GET",
            "/main?q=1",
            200,
            200,
            ("- x-kind: old", "+ x-kind: new"),
            "-answer 41\n+answer 42",
        )
        store.dispatch(a.ReplayFinished("web", ReplayReport("web", NOW - 2, NEW, 3, (difference,))))
        panel = app.query_one(TimeTravelPanel)
        assert await wait_until(pilot, lambda: panel.is_open and "1 of 3 differ" in panel.body_text)
        assert "GET /main?q=1  status 200 → 200" in panel.body_text
        assert "-answer 41" in panel.body_text and "+x-kind" not in panel.body_text
        store.dispatch(a.LoadTestStarted("web", NOW))
        assert await wait_until(pilot, lambda: "Load test running" in panel.body_text)
        report = LoadReport("web", NOW, "/main", 8, 10.0, 5000, 0, 500.0, 1.5, 3.0, 4.5)
        store.dispatch(a.LoadTestFinished("web", report))
        assert await wait_until(pilot, lambda: "500.0 req/s" in panel.body_text)
        assert "p99 4.5 ms" in panel.body_text


async def test_palette_rolls_back_to_any_kept_build_replays_and_loads() -> None:
    store = store_with_history()
    seen = recorded(store)
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_until(pilot, lambda: app.selected_app == "web")
        titles = [c.title for c in palette_commands(app)]
        assert "Roll back web to c4c4c4c4c4c4" not in titles  # the build serving now
        await run_palette(pilot, "Roll back web to 9a9a9a9a9a9a")
        assert await wait_until(pilot, lambda: seen == [a.RollbackRequested("web", OLD)])
        await run_palette(pilot, "Replay recorded requests of web")
        await run_palette(pilot, "Load test web")
        assert await wait_until(pilot, lambda: len(seen) == 3)
        assert seen[1:] == [a.ReplayRequested("web"), a.LoadTestRequested("web")]
