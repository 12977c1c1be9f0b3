"""The command palette runs every dashboard action; layouts switch by key, palette and user file."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.model import RequestRecord
from devenv.store import Store
from devenv.store import actions as a
from devenv.ui.app import UnknownLayout, run_dashboard
from devenv.ui.commands import palette_commands
from tests.ui.helpers import NOW, SIZE, Recorder, make_app, run_palette, serve, spec, wait_until


def web_store() -> Store:
    store = Store()
    store.dispatch(a.AppLoaded(spec("web")))
    serve(store, "web", "sha256:" + "ab" * 32, NOW - 10, port=3007)
    for i in range(20):  # so the latency graph has a chart to draw rather than a "no requests" note
        store.dispatch(a.RequestServed(RequestRecord(NOW - 20 + i, "web", "main", "GET", "/", 200, 2.0 + i)))
    return store


PALETTE_INTENTS = [
    ("Rebuild all apps", a.RebuildRequested(None)),
    ("Rebuild app web", a.RebuildRequested("web")),
    ("Rebuild web", a.RebuildRequested("web")),  # the selected app
    ("Restart app web", a.RestartRequested("web")),
    ("Pause watching", a.WatchPaused()),
    ("Clear logs", a.LogsCleared()),
]


async def test_palette_commands_dispatch_intents() -> None:
    store = web_store()
    recorder = Recorder(store)
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_until(pilot, lambda: app.selected_app == "web")
        for count, (query, expected) in enumerate(PALETTE_INTENTS, start=1):
            await run_palette(pilot, query)
            assert await wait_until(pilot, lambda n=count: len(recorder.actions) == n), query
            assert recorder.actions[-1] == expected, query


async def test_palette_resume_is_offered_while_paused_and_quit_shuts_down() -> None:
    store = web_store()
    store.dispatch(a.WatchPaused())
    recorder = Recorder(store)
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        titles = [c.title for c in palette_commands(app)]
        assert "Resume watching" in titles and "Pause watching" not in titles
        await run_palette(pilot, "Resume watching")
        assert await wait_until(pilot, lambda: recorder.actions == [a.WatchResumed()])
        await run_palette(pilot, "Quit wasmdev")
        assert await wait_until(pilot, lambda: recorder.actions[-1] == a.ShutdownRequested())
    assert app.shutdown_dispatched


async def test_palette_opens_and_copies_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *args, **kwargs: opened.append(url) or True)
    app = make_app(web_store())
    async with app.run_test(size=SIZE) as pilot:
        await run_palette(pilot, "Open web in browser: http://127.0.0.1:3007/")
        assert await wait_until(pilot, lambda: opened == ["http://127.0.0.1:3007/"])
        await run_palette(pilot, "Copy URL of web: http://127.0.0.1:3007/")
        assert app.clipboard == "http://127.0.0.1:3007/"
        app.copy_to_clipboard("")
        await pilot.press("y")  # the key does the same for the selected app
        assert await wait_until(pilot, lambda: app.clipboard == "http://127.0.0.1:3007/")


def graph_shows_chart(app: object) -> bool:
    latency = app.query_one("#latency")  # type: ignore[attr-defined]
    return latency.query_one(".graph-plot").display and not latency.query_one(".graph-spark").display


async def test_layout_key_cycles_and_changes_the_arrangement() -> None:
    app = make_app(web_store())
    async with app.run_test(size=SIZE) as pilot:
        assert app.layout_name == "side-by-side"
        main = app.query_one("#main")
        graphs = app.query_one("#graphs")
        assert main.styles.layout.name == "horizontal"
        assert graph_shows_chart(app)

        await pilot.press("l")
        assert await wait_until(pilot, lambda: app.layout_name == "logs")
        assert main.styles.layout.name == "vertical"
        await pilot.pause()
        assert not graph_shows_chart(app)  # one-line graphs: sparklines, no charts
        assert app.query_one("#latency").outer_size.height == 1
        assert app.query_one("#logs-panel").outer_size.height > SIZE[1] // 3

        await pilot.press("l")
        assert await wait_until(pilot, lambda: app.layout_name == "metrics")
        assert graphs.styles.layout.name == "grid"
        assert graph_shows_chart(app)

        await pilot.press("l")
        assert await wait_until(pilot, lambda: app.layout_name == "side-by-side")
        assert main.styles.layout.name == "horizontal"


async def test_layout_switches_from_the_palette() -> None:
    app = make_app(web_store())
    async with app.run_test(size=SIZE) as pilot:
        await run_palette(pilot, "Switch layout: metrics")
        assert await wait_until(pilot, lambda: app.layout_name == "metrics")
        assert app.query_one("#graphs").styles.layout.name == "grid"


async def test_workspace_layout_adds_and_overrides(tmp_path: Path) -> None:
    layouts = tmp_path / "layouts"
    layouts.mkdir()
    (layouts / "wide-logs.tcss").write_text(
        "/* wide-logs: no graphs at all. */\n#graphs { display: none; }\n"
    )
    (layouts / "logs.tcss").write_text(
        "/* my logs */\n#main { layout: vertical; }\n#apps { display: none; }\n"
    )
    app = make_app(web_store(), workspace=tmp_path, layout="wide-logs")
    async with app.run_test(size=SIZE) as pilot:
        assert app.layout_name == "wide-logs"
        assert not app.query_one("#graphs").display
        assert app.layouts.names() == ["side-by-side", "logs", "metrics", "wide-logs"]
        assert app.layouts.layouts["logs"].description == "my logs"
        app.switch_layout("logs")
        for _ in range(100):  # the new stylesheet applies over a few frames (more on a busy machine)
            await pilot.pause(0.02)
            if not app.query_one("#apps").display:
                break
        assert not app.query_one("#apps").display  # the workspace's logs.tcss replaced the built-in
        assert app.query_one("#graphs").display  # and wide-logs' rules are gone


async def test_broken_layout_is_reported_and_the_current_one_stays(tmp_path: Path) -> None:
    (tmp_path / "layouts").mkdir()
    (tmp_path / "layouts" / "broken.tcss").write_text("#main { layout: sideways; }\n")
    app = make_app(web_store(), workspace=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        assert not app.switch_layout("broken")
        await pilot.pause()
        assert app.layout_name == "side-by-side"
        assert app.query_one("#main").styles.layout.name == "horizontal"
        assert any("broken.tcss" in str(n.message) for n in app._notifications)


async def test_unknown_layout_at_startup_falls_back_to_default() -> None:
    app = make_app(web_store(), layout="nope")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.layout_name == "side-by-side"
        assert any("nope" in str(n.message) for n in app._notifications)


def test_run_dashboard_rejects_an_unknown_layout_before_starting() -> None:
    store = Store()
    recorder = Recorder(store)
    with pytest.raises(UnknownLayout, match="known layouts: side-by-side, logs, metrics"):
        run_dashboard(store, layout="nope", workspace=None)
    assert recorder.actions == []


def test_run_dashboard_dispatches_shutdown_even_when_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    from devenv.ui.app import WasmdevApp

    def interrupted(self: WasmdevApp, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(WasmdevApp, "run", interrupted)
    store = Store()
    recorder = Recorder(store)
    with pytest.raises(KeyboardInterrupt):
        run_dashboard(store, layout="logs", workspace=None)
    assert recorder.actions == [a.ShutdownRequested()]


def test_up_refuses_an_unknown_layout_before_the_engine_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from devenv import cli
    from devenv.config import load_workspace
    from devenv.engine import runner
    from devenv.errors import WasmdevError

    def no_engine(*args: object, **kwargs: object) -> None:
        raise AssertionError("the engine started before --layout was checked")

    monkeypatch.setattr(runner, "EngineThread", no_engine)
    (tmp_path / "layouts").mkdir()
    (tmp_path / "layouts" / "mine.tcss").write_text("#logs-panel { height: 3fr; }\n")
    args = argparse.Namespace(layout="nope")
    with pytest.raises(WasmdevError) as caught:
        cli.run_dashboard(args, Store(), load_workspace(tmp_path))
    message = str(caught.value)
    assert caught.value.where == "--layout"
    assert "known layouts: side-by-side, logs, metrics, mine" in message
    assert f"{tmp_path / 'layouts'}/nope.tcss" in message
