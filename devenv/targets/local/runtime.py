"""The one wasmtime Engine the local target runs every guest on, and the clock that bounds them.

A single Engine is shared by all apps and builds: compiled code is tied to the engine that made
it, and one engine means one epoch counter. Deadlines use epoch interruption rather than fuel
because it costs the guest almost nothing (a load and compare at loop heads and calls); a ticker
thread advances the epoch every ``TICK_S`` and each request's store gets a deadline in ticks.
"""

from __future__ import annotations

import math
import threading
import time
from importlib.metadata import PackageNotFoundError, version

import wasmtime

TICK_S = 0.01  # deadline resolution; a request may run up to one tick past its timeout
# guest_ffi, runtime's pooling setup and wasi/fastbytes + fastcall drive wasmtime-py internals
# (``wasmtime._ffi``, C struct layouts, private type methods) checked against these releases.
SUPPORTED_WASMTIME = ("50.",)


def wasmtime_version() -> str:
    try:
        return version("wasmtime")
    except PackageNotFoundError:  # a vendored copy: still keep caches apart from other builds
        return "unknown"


def check_wasmtime_version() -> None:
    """Refuse a wasmtime whose internals were not checked: a changed C struct layout would
    corrupt memory rather than raise."""
    found = wasmtime_version()
    if found != "unknown" and not found.startswith(SUPPORTED_WASMTIME):
        raise RuntimeError(
            f"wasmtime {found} is installed, but the local target is checked against "
            f"{' / '.join(v + 'x' for v in SUPPORTED_WASMTIME)}"
        )


# Pooling allocator limits. A slot is a reservation of address space, committed only as guests
# touch it, so generous counts cost little; they bound concurrent instances, which the local
# target keeps to a handful (one per guest thread, plus deploy-time checks). Components built by
# componentize-py carry a few core instances and large function tables, hence the headroom.
POOL_LIMITS = {
    "total_core_instances": 256,
    "total_memories": 256,
    "total_tables": 256,
    "total_component_instances": 64,
    "max_core_instances_per_component": 64,
    "max_memories_per_component": 16,
    "max_tables_per_component": 32,
    "table_elements": 100_000,
}


def _enable_pooling(config: wasmtime.Config) -> bool:
    """Instances take pre-reserved slots instead of mmap/munmap per request (~50 us each, and
    the process-wide mmap lock). The C API has it; wasmtime-py does not wrap it."""
    from wasmtime import _ffi as ffi

    try:
        pool = ffi.wasmtime_pooling_allocation_config_new()
    except AttributeError:
        return False
    try:
        for name, value in POOL_LIMITS.items():
            getattr(ffi, f"wasmtime_pooling_allocation_config_{name}_set")(pool, value)
        ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pool)
    except AttributeError:
        return False
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pool)
    return True


class WasmRuntime:
    """The shared Engine plus its epoch ticker. ``close`` stops the ticker; the engine stays valid."""

    def __init__(self, pooling: bool = True) -> None:
        check_wasmtime_version()
        config = wasmtime.Config()
        config.epoch_interruption = True
        config.wasm_component_model = True
        config.cranelift_opt_level = "speed"
        self.pooling = pooling and _enable_pooling(config)
        self.engine = wasmtime.Engine(config)
        # Everything that changes the machine code goes in here: the compile cache keys on it so
        # an upgrade or a config change never loads code compiled for another engine.
        allocator = "pooling" if self.pooling else "on-demand"
        self.config_key = f"wasmtime-{wasmtime_version()};epoch;component-model;opt=speed;{allocator}"
        self._longest_deadline = 0
        self.stopping = False
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="wasmdev-epoch", daemon=True)
        self._ticker.start()

    def deadline_ticks(self, timeout_s: float) -> int:
        # +1: the current tick may be almost over when the request starts.
        ticks = max(1, math.ceil(timeout_s / TICK_S)) + 1
        self._longest_deadline = max(self._longest_deadline, ticks)
        return ticks

    def ticks_until(self, deadline: float, timeout_s: float) -> int:
        """Ticks left until ``deadline`` (time.monotonic()); ``timeout_s``'s worth if 0."""
        if not deadline:
            return self.deadline_ticks(timeout_s)
        return max(1, math.ceil((deadline - time.monotonic()) / TICK_S)) + 1

    def interrupt_all(self) -> None:
        """Make every guest running now hit its deadline at once (on shutdown, so closing does
        not wait out a guest stuck in a loop)."""
        self.stopping = True  # a guest cut short now is reported as stopped, not timed out
        for _ in range(self._longest_deadline + 1):
            self.engine.increment_epoch()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            self.engine.increment_epoch()

    def close(self) -> None:
        self._stop.set()
        if self._ticker.is_alive() and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=1.0)
