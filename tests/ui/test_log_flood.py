"""A flood of log lines from another thread: the UI still answers a key, and memory stays bounded."""

from __future__ import annotations

import asyncio
import threading
import time

from devenv.model import LogLine, LogStream
from devenv.store import Store
from devenv.store import actions as a
from devenv.ui.widgets.log_view import LogView
from tests.ui.helpers import SIZE, make_app, spec, wait_until

RATE = 10_000  # lines per second, the rate the dashboard must keep up with
DURATION_S = 2.0
KEY_BOUND_S = 2.0  # generous on purpose: the machine running the tests is shared
VIEW_MAX_LINES = 10_000


class Flood(threading.Thread):
    """Dispatches log lines at RATE per second, in batches, as a busy engine would: for at least
    DURATION_S, and on until told to stop, so a key is always pressed and answered mid-flood."""

    def __init__(self, store: Store) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.sent = 0
        self.elapsed = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while (now := time.monotonic() - start) < DURATION_S or not self.stop.is_set():
            for _ in range(100):
                self.store.dispatch(
                    a.LogEmitted(LogLine(time.time(), "web", LogStream.STDOUT, f"flood line {self.sent}"))
                )
                self.sent += 1
            ahead = self.sent / RATE - now
            if ahead > 0:
                time.sleep(ahead)
        self.elapsed = time.monotonic() - start


async def test_flood_of_log_lines_keeps_keys_responsive_and_memory_bounded() -> None:
    store = Store(max_log_lines=20_000)
    store.dispatch(a.AppLoaded(spec("web")))
    app = make_app(store, clock=time.time)
    flood = Flood(store)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(LogView)
        assert view.max_lines == VIEW_MAX_LINES
        flood.start()
        try:
            assert await wait_until(pilot, lambda: view.received >= 3_000), "the flood never reached the view"

            main = app.query_one("#main")
            assert main.styles.layout.name == "horizontal"
            pressed = time.monotonic()
            # The press runs as its own task so the clock measures the key's visible effect (the
            # next layout restyled the screen), not the pilot's wait for an idle moment, which a
            # flood postpones.
            press = asyncio.create_task(pilot.press("l"))
            # Polled with plain sleeps, not pilot.pause(): that first waits for every widget to
            # drain its message queue, which under the flood added seconds to the measurement
            # after the key had long been answered. The bound itself is unchanged.
            answered_at = None
            while time.monotonic() - pressed < 5 * KEY_BOUND_S:
                if main.styles.layout.name == "vertical":
                    answered_at = time.monotonic()
                    break
                await asyncio.sleep(0.005)
            answered = answered_at is not None
            latency = (answered_at or time.monotonic()) - pressed
            flooding_when_answered = flood.is_alive()
            flood.stop.set()  # the flood still runs to DURATION_S, for the memory checks below
            await press
            assert answered and latency < KEY_BOUND_S, f"layout key took {latency:.2f}s under the flood"
            assert app.layout_name == "logs"
            assert flooding_when_answered, "the key must have been answered while the flood was still running"

            peak = 0
            while flood.is_alive():
                peak = max(peak, view.line_count)
                await pilot.pause(0.05)
            flood.join()
            rate = flood.sent / flood.elapsed
            assert rate >= RATE * 0.5, f"the flood only reached {rate:.0f} lines/s; the test proves nothing"

            last = f"flood line {flood.sent - 1}"
            assert await wait_until(pilot, lambda: bool(view.lines) and view.lines[-1].text == last)
            assert view.line_count == VIEW_MAX_LINES  # full, and no more than its bound
            assert peak <= VIEW_MAX_LINES
            assert len(store.logs) <= 20_000
            assert view.following and view.scroll_y == view.max_scroll_y  # still on the tail

        finally:
            flood.stop.set()  # never leave a flooding thread behind a failed assertion


async def test_lines_evicted_before_the_view_read_them_are_reported_not_spliced() -> None:
    store = Store(max_log_lines=100)
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(LogView)
        app.refresh_now()
        # 250 lines between two reads: the store keeps the newest 100, so 150 never reach the view.
        for i in range(250):
            store.dispatch(a.LogEmitted(LogLine(time.time(), "web", LogStream.STDOUT, f"line {i}")))
        app.refresh_now()
        await pilot.pause()
        texts = [line.text for line in view.lines]
        assert texts[0] == "… 150 lines skipped (more arrived at once than the view holds)"
        assert texts[1:] == [f"line {i}" for i in range(150, 250)]
