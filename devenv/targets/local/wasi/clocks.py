"""wasi:clocks 0.2: wall clock and monotonic clock (with pollable timers) from the host's clocks."""

from __future__ import annotations

import time
from typing import Any

from devenv.targets.local.wasi.host import HostContext
from devenv.targets.local.wasi.io import Pollable
from devenv.targets.local.wasi.registry import Interface


def _wall_now(ctx: HostContext) -> dict[str, int]:
    ns = time.time_ns()
    return {"seconds": ns // 1_000_000_000, "nanoseconds": ns % 1_000_000_000}


def _wall_resolution(ctx: HostContext) -> dict[str, int]:
    return {"seconds": 0, "nanoseconds": 1000}


def _mono_now(ctx: HostContext) -> int:
    return time.monotonic_ns()


def _mono_resolution(ctx: HostContext) -> int:
    return 1


def _subscribe_instant(ctx: HostContext, when_ns: int) -> Any:
    return ctx.own(Pollable(ready_at_ns=when_ns))


def _subscribe_duration(ctx: HostContext, duration_ns: int) -> Any:
    return ctx.own(Pollable(ready_at_ns=time.monotonic_ns() + duration_ns))


INTERFACES = [
    Interface("wasi:clocks/wall-clock", functions={"now": _wall_now, "resolution": _wall_resolution}),
    Interface(
        "wasi:clocks/monotonic-clock",
        functions={
            "now": _mono_now,
            "resolution": _mono_resolution,
            "subscribe-instant": _subscribe_instant,
            "subscribe-duration": _subscribe_duration,
        },
    ),
]
