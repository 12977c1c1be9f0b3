"""The dashboard's time-travel keys on a real session: the real dev loop builds and serves a WAT
app over real HTTP, and the dashboard (Textual's test driver, on the same loop) rolls it back,
replays and load-tests it through the store's intents, as a user at the keyboard would."""

from __future__ import annotations

from pathlib import Path

from devenv.store import actions as a
from devenv.ui.app import WasmdevApp
from devenv.ui.widgets.timetravel import TimeTravelPanel
from tests.engine.session import WAIT_S, dev_session
from tests.engine.test_replay_and_load import record_real_request
from tests.engine.wat_app import set_body, write_wat_app
from tests.ui.helpers import wait_until


async def test_keys_roll_back_replay_and_load_a_real_app(tmp_path: Path, compile_cache: Path) -> None:
    manifest = write_wat_app(tmp_path, "web", body="screen one")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "screen one")
        await record_real_request(s, "web")
        set_body(manifest, "screen two")
        await s.wait_body("web", "screen two")
        await s.wait(lambda st: len(st.apps["web"].history) == 2, "two kept builds")
        builds = s.count(a.BuildStarted, "web")
        app = WasmdevApp(s.store)
        async with app.run_test(size=(160, 48)) as pilot:
            assert await wait_until(pilot, lambda: app.selected_app == "web", WAIT_S)
            panel = app.query_one(TimeTravelPanel)

            await pilot.press("v")  # replay: the recorded response came from build one
            assert await wait_until(pilot, lambda: "1 of 1 differ" in panel.body_text, WAIT_S)
            assert "+screen two" in panel.body_text

            await pilot.press("b")  # roll back
            assert await wait_until(pilot, lambda: panel.has_class("-rolled-back"), WAIT_S)
            # The test's own look, not the app's traffic: kept out of the recordings replayed next.
            assert "screen one" in (await s.get("web", headers={"x-wasmdev-replay": "1"})).text
            assert "save to build again" in panel.banner_text
            assert s.count(a.BuildStarted, "web") == builds

            await pilot.press("v")  # the same build as recorded: nothing differs
            assert await wait_until(pilot, lambda: "0 of 1 differ" in panel.body_text, WAIT_S)

            # Counted before the key: the load test starts at once, and the store keeps at most
            # 5,000 records per app, so a count taken after a fast start may already be at the cap.
            before = len(s.store.metrics.requests("web"))
            await pilot.press("t")  # a 10 s load test; the request records arrive as it runs
            assert await wait_until(pilot, lambda: "Load test running" in panel.body_text, WAIT_S)
            assert await wait_until(pilot, lambda: len(s.store.metrics.requests("web")) > before + 10, WAIT_S)
            assert await wait_until(pilot, lambda: "req/s" in panel.body_text, WAIT_S)
