"""Stopping one running guest: when its client has gone, or wasmdev stops.

Epoch interruption gives each store a deadline in ticks, set when the store is made; nothing
may touch a store from another thread while its guest runs. So a guest that runs for long gets
a short deadline (``CHECK_TICKS``) and an epoch-deadline callback (wasmtime's C API, which
wasmtime-py does not wrap): each time it is reached the callback, on the guest's own thread,
checks the request's real deadline, whether its client went away and whether wasmdev is
stopping, and either extends the deadline by another ``CHECK_TICKS`` or ends the guest with a
trap whose message says why. A request that finishes within ``CHECK_TICKS`` (almost all) never
runs the callback.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import threading
import time
from collections.abc import Callable

from wasmtime import _ffi as ffi

from devenv.targets.local.runtime import TICK_S

CHECK_TICKS = 10  # how often (in epoch ticks, 10 ms each) a long-running guest is checked
_CONTINUE = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
STOP_PREFIX = "wasmdev-stop: "  # the start of the trap message of a guest stopped here

_Callback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ctypes.c_uint8),
)
_register = ctypes.CFUNCTYPE(None, ctypes.c_void_p, _Callback, ctypes.c_void_p, ctypes.c_void_p)(
    ("wasmtime_store_epoch_deadline_callback", ffi.dll)
)
_error_new = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(("wasmtime_error_new", ffi.dll))


class GuestWatch:
    """One request's limits, checked by the callback on the guest's thread."""

    def __init__(self, deadline: float, client_gone: threading.Event | None, stopping: Callable[[], bool]) -> None:
        self.deadline = deadline
        self.client_gone = client_gone
        self.stopping = stopping
        self.reason: str | None = None  # why the callback stopped the guest

    def first_ticks(self) -> int:
        return min(CHECK_TICKS, self._ticks_left())

    def _ticks_left(self) -> int:
        return max(1, math.ceil((self.deadline - time.monotonic()) / TICK_S))

    def check(self) -> str | None:
        if self.stopping():
            return "stopped: wasmdev is shutting down"
        if self.client_gone is not None and self.client_gone.is_set():
            return "stopped: its client went away"
        if time.monotonic() >= self.deadline:
            return "deadline"
        return None


_watches: dict[int, GuestWatch] = {}
_keys = itertools.count(1)


@_Callback
def _on_deadline(_ctx: int, data: int, ticks: ctypes._Pointer, kind: ctypes._Pointer) -> int:
    try:
        watch = _watches.get(data or 0)
        why = "the request is over" if watch is None else watch.check()
        if why is None:
            assert watch is not None
            ticks[0] = min(CHECK_TICKS, watch._ticks_left())
            kind[0] = _CONTINUE
            return 0
        if watch is not None:
            watch.reason = why
        return int(_error_new((STOP_PREFIX + why).encode()) or 0)
    except BaseException:  # an exception must not cross into wasmtime: stop the guest instead
        return int(_error_new(b"wasmdev-stop: deadline check failed") or 0)


def watch_store(store_ptr: int, watch: GuestWatch) -> int:
    """Put ``watch`` on the store (a ``wasmtime_store_t*``); its key, for ``unwatch``."""
    key = next(_keys)
    _watches[key] = watch
    _register(store_ptr, _on_deadline, key, None)
    return key


def unwatch(key: int) -> None:
    _watches.pop(key, None)


def stopped_reason(watch: GuestWatch | None, timeout_s: float) -> str | None:
    """The failure to report for a guest the callback ended, or None if it did not."""
    if watch is None or watch.reason is None:
        return None
    if watch.reason == "deadline":
        return f"timed out after {timeout_s:g}s (the request deadline)"
    return watch.reason
