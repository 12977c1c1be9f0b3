"""How a kept build is written for a person: one spelling for `wasmdev history` (the engine's
reply to a second terminal) and the dashboard's time-travel panel, so neither imports the other."""

from __future__ import annotations

import time

from devenv.model import KeptBuild
from devenv.timefmt import format_age


def history_lines(
    builds: tuple[KeptBuild, ...], serving: str | None, now: float | None = None, serving_mark: str = "*"
) -> list[str]:
    """Newest first, one line per kept build with its 12-hex-digit digest; the one serving is
    marked. The one spelling for `wasmdev history` and the dashboard's time-travel panel."""
    if not builds:
        return ["no kept builds yet: each build that serves is kept"]
    now = time.time() if now is None else now
    blank = " " * len(serving_mark)
    lines = []
    for b in builds:
        mark = serving_mark if b.digest == serving else blank
        e2s = f"edit→serving {b.edit_to_serving_ms:.0f} ms" if b.edit_to_serving_ms is not None else "first build"
        served = "served" if b.served else "never served"
        changed = ", ".join(b.changed[:3]) + (f" +{len(b.changed) - 3}" if len(b.changed) > 3 else "")
        image = f"  {b.image}" if b.image else ""
        lines.append(
            f"{mark} {b.short_digest}  {ago(b.built_at, now):>7}  {served:<12} {e2s:<22} {changed or '-'}{image}"
        )
    return lines


def ago(ts: float, now: float | None = None) -> str:
    """ "3m ago": the dashboard's spelling of an age (devenv.timefmt, shared with the UI)."""
    return f"{format_age((time.time() if now is None else now) - ts)} ago"
