"""Short, fixed-width renderings of durations and ages, shared by the engine's log and history
lines and the dashboard.

Pure functions in a neutral module: the engine must not depend on the UI package, and both must
spell an age the same way.
"""

from __future__ import annotations

import math

EMPTY = "—"  # what a value that is not there reads as


def format_duration(seconds: float | None) -> str:
    """A duration as a person reads it at a glance: 350ms, 3.2s, 1m05s, 2h03m."""
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return EMPTY
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_age(seconds: float | None) -> str:
    """How long ago something happened, in the coarsest unit that still says something: 5s, 3m, 2h, 4d."""
    if seconds is None or math.isnan(seconds):
        return EMPTY
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"
