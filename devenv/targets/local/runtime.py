"""The one wasmtime Engine the local target runs every guest on, and the clock that bounds them.

A single Engine is shared by all apps and builds: compiled code is tied to the engine that made
it, and one engine means one epoch counter. Deadlines use epoch interruption rather than fuel
because it costs the guest almost nothing (a load and compare at loop heads and calls); a ticker
thread advances the epoch every ``TICK_S`` and each request's store gets a deadline in ticks.
"""

from __future__ import annotations

import math
import threading
from importlib.metadata import PackageNotFoundError, version

import wasmtime

TICK_S = 0.01  # deadline resolution; a request may run up to one tick past its timeout


def wasmtime_version() -> str:
    try:
        return version("wasmtime")
    except PackageNotFoundError:  # a vendored copy: still keep caches apart from other builds
        return "unknown"


class WasmRuntime:
    """The shared Engine plus its epoch ticker. ``close`` stops the ticker; the engine stays valid."""

    def __init__(self) -> None:
        config = wasmtime.Config()
        config.epoch_interruption = True
        config.wasm_component_model = True
        config.cranelift_opt_level = "speed"
        self.engine = wasmtime.Engine(config)
        # Everything that changes the machine code goes in here: the compile cache keys on it so
        # an upgrade or a config change never loads code compiled for another engine.
        self.config_key = f"wasmtime-{wasmtime_version()};epoch;component-model;opt=speed"
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="wasmdev-epoch", daemon=True)
        self._ticker.start()

    def deadline_ticks(self, timeout_s: float) -> int:
        # +1: the current tick may be almost over when the request starts.
        return max(1, math.ceil(timeout_s / TICK_S)) + 1

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            self.engine.increment_epoch()

    def close(self) -> None:
        self._stop.set()
        if self._ticker.is_alive() and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=1.0)
