"""Per-app resource counters the engine's sampler polls (``LocalTarget.usage``).

Counters are cumulative (the sampler turns them into rates); the memory figure is the largest
linear memory any request of the serving version reached. Updated from worker threads.
"""

from __future__ import annotations

import threading

from devenv.targets.base import UsageCounters

__all__ = ["UsageCounters", "UsageMeter"]


class UsageMeter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._apps: dict[str, list[float]] = {}  # app -> [cpu, memory, requests, errors]

    def record(self, app: str, cpu_seconds: float, memory_bytes: int, error: bool) -> None:
        with self._lock:
            c = self._apps.get(app)
            if c is None:
                c = self._apps[app] = [0.0, 0, 0, 0]
            c[0] += cpu_seconds
            if memory_bytes > c[1]:
                c[1] = memory_bytes
            c[2] += 1
            if error:
                c[3] += 1

    def new_version(self, app: str) -> None:
        """A new build went live: its memory high-water mark starts again; totals keep counting."""
        with self._lock:
            c = self._apps.get(app)
            if c is not None:
                c[1] = 0

    def forget(self, app: str) -> None:
        with self._lock:
            self._apps.pop(app, None)

    def get(self, app: str) -> UsageCounters:
        with self._lock:
            c = self._apps.get(app)
            if c is None:
                return UsageCounters()
            return UsageCounters(float(c[0]), int(c[1]), int(c[2]), int(c[3]))
