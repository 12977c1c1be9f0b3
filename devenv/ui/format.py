"""Short, fixed-width renderings of sizes, latencies, percentages and digests for the dashboard.

Pure functions (no Textual) so the table, the graphs and the tests agree on one spelling. Durations
and ages are in devenv.timefmt, which the engine's lines use too.
"""

from __future__ import annotations

import math

from devenv.timefmt import EMPTY


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
