"""Plumbing shared by the observer's threads: settings, backoff, and open HTTP streams that
``close()`` can cut (a thread blocked reading a watch or a log follow must not hold up shutdown)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes.watch.watch import iter_resp_lines


@dataclass(frozen=True)
class ObserveSettings:
    metrics_interval_s: float = 15.0  # metrics-server's default resolution; polling faster only repeats it
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    watch_timeout_s: int = 300  # the server ends each watch after this; we re-watch from the last version
    log_idle_timeout_s: float = 300.0  # a silent log stream is reopened (dedup by timestamp) after this
    request_timeout_s: float = 15.0


class Backoff:
    """Exponential: initial, 2×, 4×, … up to ``maximum``; ``reset`` after a success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum, self.current = initial, maximum, initial

    def next(self) -> float:
        delay, self.current = self.current, min(self.maximum, self.current * 2)
        return delay

    def reset(self) -> None:
        self.current = self.initial


class OpenStreams:
    """The streaming responses being read right now, so ``abort_all`` can unblock their readers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._responses: set[Any] = set()
        self._aborted = False

    def lines(self, open_stream: Callable[[], Any]) -> Iterator[str]:
        """Open a ``_preload_content=False`` response and yield its lines as they arrive."""
        resp = open_stream()
        with self._lock:
            # abort_all() may have run while this stream was being opened: it could not cut it
            # then, and the reader would block until the server ends the watch (minutes).
            aborted = self._aborted
            if not aborted:
                self._responses.add(resp)
        try:
            if not aborted:
                yield from iter_resp_lines(resp)
        finally:
            with self._lock:
                self._responses.discard(resp)
            resp.close()
            resp.release_conn()

    def abort_all(self) -> None:
        """Cut every open stream, and every stream opened from now on."""
        with self._lock:
            self._aborted = True
            responses = list(self._responses)
        for resp in responses:
            for method in ("shutdown", "close"):  # urllib3 2's shutdown() wakes a blocked read
                try:
                    getattr(resp, method)()
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
