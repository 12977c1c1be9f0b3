"""EngineThread: the dev loop on its own asyncio loop in a background thread.

The TUI owns the main thread and Textual's event loop; the engine's builds, file watching and
deploys must never block it. The TUI talks to the engine only through the store: it reads state
and dispatches intents, which the dev loop picks up thread-safely.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from devenv.engine.devloop import DevLoop
from devenv.engine.system_log import one_line
from devenv.errors import WasmdevError
from devenv.model import LogLine, LogStream
from devenv.store import actions as a
from devenv.store.store import Store


class EngineThread:
    """Runs ``make_loop()``'s DevLoop until ``stop()``; ``error`` holds what ended it early."""

    def __init__(
        self, store: Store, make_loop: Callable[[], DevLoop], *, name: str = "wasmdev-engine"
    ) -> None:
        self.store = store
        self._make_loop = make_loop
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started = threading.Event()
        self.devloop: DevLoop | None = None
        self.error: BaseException | None = None

    def start(self, wait_ready_s: float | None = None) -> EngineThread:
        """Start the thread; with ``wait_ready_s``, wait until the first builds are scheduled."""
        self._thread.start()
        if wait_ready_s is not None:
            self._started.wait(wait_ready_s)
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as err:  # reported to the owner thread via .error
            self.error = err
            if isinstance(err, WasmdevError):  # shown in the UI's log too, not only after exit
                text = f"engine stopped: {one_line(str(err))}"
                self.store.dispatch(
                    a.LogEmitted(LogLine(time.time(), "", LogStream.SYSTEM, text, level="error"))
                )
        finally:
            self._started.set()

    async def _run(self) -> None:
        self.devloop = self._make_loop()
        ready = asyncio.create_task(self._signal_ready(self.devloop))
        try:
            await self.devloop.run()
        finally:
            ready.cancel()

    async def _signal_ready(self, devloop: DevLoop) -> None:
        await devloop.ready.wait()
        self._started.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the engine to finish; True when it has."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the loop to shut down (closing the target) and wait for the thread."""
        if self.devloop is not None:
            self.devloop.stop()
        else:
            self.store.dispatch(a.ShutdownRequested())
        self._thread.join(timeout_s)
