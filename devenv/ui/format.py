"""Short, fixed-width renderings of durations, ages, sizes and latencies for the dashboard.

Pure functions (no Textual) so the table, the graphs and the tests agree on one spelling.
"""

from __future__ import annotations

import math

EMPTY = "—"


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


def format_ms(ms: float | None) -> str:
    """A latency: 0.8 ms, 12.3 ms, 412 ms, 1.20 s; a dash when there was no request to measure."""
    if ms is None or math.isnan(ms):
        return EMPTY
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s"


_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n: float | None) -> str:
    """Binary units, because wasm linear memory grows in 64 KiB pages: 512 B, 1.5 MiB."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return EMPTY
    value = float(n)
    for unit in _BYTE_UNITS:
        if abs(value) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return EMPTY  # unreachable; keeps type checkers content


def format_percent(value: float | None) -> str:
    if value is None or math.isnan(value):
        return EMPTY
    return f"{value:.1f} %"


def short_digest(digest: str | None, length: int = 12) -> str:
    """The hex part of "sha256:…", cut to ``length`` (the same prefix BuiltApp.short_digest shows)."""
    if not digest:
        return EMPTY
    return digest.split(":", 1)[-1][:length]
