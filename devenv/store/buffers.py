"""Bounded buffers for the high-rate streams: logs, requests and resource samples.

Readers keep a checkpoint (the last sequence number they saw) and fetch only what is new, as
Tilt's logstore does; a reader that fell behind past the buffer's bound simply misses the oldest
lines (it is told how many). Memory stays flat however long the session runs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace

from devenv.model import LogLine, RecordedExchange, RequestRecord, ResourceSample

# The fields ``LogBuffer.append`` copies by position, in order; checked against the model once.
_POSITIONAL_LOGLINE = tuple(f.name for f in fields(LogLine)) == (
    "ts",
    "app",
    "stream",
    "text",
    "component",
    "request_id",
    "level",
    "seq",
)


@dataclass(frozen=True)
class LogChunk:
    lines: tuple[LogLine, ...]
    checkpoint: int  # pass back to ``since`` for the next chunk
    dropped: int  # lines that were evicted before this reader saw them


class LogBuffer:
    def __init__(self, max_lines: int = 20_000) -> None:
        self._lines: deque[LogLine] = deque(maxlen=max_lines)
        self._next_seq = 1
        self._lock = threading.Lock()

    @property
    def max_lines(self) -> int:
        return self._lines.maxlen or 0

    def append(self, line: LogLine) -> LogLine:
        # Built field by field, not with ``dataclasses.replace``: this runs for every log line
        # (2-3 per request on the local target) and ``replace`` cost ~10x more.
        with self._lock:
            seq = self._next_seq
            self._next_seq = seq + 1
            if _POSITIONAL_LOGLINE:
                stamped = LogLine(
                    line.ts,
                    line.app,
                    line.stream,
                    line.text,
                    line.component,
                    line.request_id,
                    line.level,
                    seq,
                )
            else:  # LogLine grew a field this module does not know: stay correct, if slower
                stamped = replace(line, seq=seq)
            self._lines.append(stamped)
            return stamped

    def since(self, checkpoint: int = 0, limit: int | None = None) -> LogChunk:
        """Lines with seq > checkpoint, oldest first (at most ``limit``, the newest ones if cut)."""
        with self._lock:
            if not self._lines or checkpoint >= self._next_seq - 1:
                return LogChunk((), max(checkpoint, self._next_seq - 1) if self._lines else checkpoint, 0)
            first_seq = self._lines[0].seq
            start = max(0, checkpoint + 1 - first_seq)
            dropped = max(0, first_seq - checkpoint - 1)
            n = len(self._lines)
            if limit is not None and n - start > limit:
                dropped += n - start - limit
                start = n - limit
            lines = tuple(self._lines[i] for i in range(start, n))
            return LogChunk(lines, self._next_seq - 1, dropped)

    def tail(self, n: int, predicate: Callable[[LogLine], bool] | None = None) -> list[LogLine]:
        with self._lock:
            out: list[LogLine] = []
            for line in reversed(self._lines):
                if predicate is None or predicate(line):
                    out.append(line)
                    if len(out) >= n:
                        break
            out.reverse()
            return out

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()

    def __len__(self) -> int:
        return len(self._lines)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already-sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_ms: float
    p95_ms: float
    requests_per_second: float
    errors: int


class MetricsBuffer:
    """Per-app sliding windows of request records and resource samples."""

    def __init__(self, max_requests_per_app: int = 5_000, max_samples_per_app: int = 600) -> None:
        self._requests: dict[str, deque[RequestRecord]] = {}
        self._samples: dict[str, deque[ResourceSample]] = {}
        self._max_requests = max_requests_per_app
        self._max_samples = max_samples_per_app
        self._lock = threading.Lock()

    def add_request(self, record: RequestRecord) -> None:
        with self._lock:
            q = self._requests.get(record.app)
            if q is None:
                q = self._requests[record.app] = deque(maxlen=self._max_requests)
            q.append(record)

    def add_sample(self, sample: ResourceSample) -> None:
        with self._lock:
            q = self._samples.get(sample.app)
            if q is None:
                q = self._samples[sample.app] = deque(maxlen=self._max_samples)
            q.append(sample)

    def requests(
        self, app: str, window_s: float | None = None, now: float | None = None
    ) -> list[RequestRecord]:
        with self._lock:
            records = list(self._requests.get(app, ()))
        if window_s is not None:
            cutoff = (now if now is not None else time.time()) - window_s
            records = [r for r in records if r.ts >= cutoff]
        return records

    def samples(
        self, app: str, window_s: float | None = None, now: float | None = None
    ) -> list[ResourceSample]:
        with self._lock:
            samples = list(self._samples.get(app, ()))
        if window_s is not None:
            cutoff = (now if now is not None else time.time()) - window_s
            samples = [s for s in samples if s.ts >= cutoff]
        return samples

    def latency(self, app: str, window_s: float = 60.0, now: float | None = None) -> LatencySummary:
        now = now if now is not None else time.time()
        records = self.requests(app, window_s, now)
        values = sorted(r.latency_ms for r in records)
        errors = sum(1 for r in records if r.status >= 500)
        rps = len(records) / window_s if window_s > 0 else 0.0
        return LatencySummary(len(values), percentile(values, 50), percentile(values, 95), rps, errors)

    def latency_series(
        self, app: str, buckets: int = 60, bucket_s: float = 1.0, now: float | None = None
    ) -> tuple[list[float], list[float]]:
        """p50 and p95 per time bucket (oldest first); NaN where a bucket saw no request."""
        now = now if now is not None else time.time()
        start = now - buckets * bucket_s
        grouped: list[list[float]] = [[] for _ in range(buckets)]
        for r in self.requests(app, buckets * bucket_s, now):
            i = int((r.ts - start) // bucket_s)
            if 0 <= i < buckets:
                grouped[i].append(r.latency_ms)
        p50: list[float] = []
        p95: list[float] = []
        for g in grouped:
            g.sort()
            p50.append(percentile(g, 50))
            p95.append(percentile(g, 95))
        return p50, p95

    def forget(self, apps: Iterable[str] | None = None) -> None:
        with self._lock:
            for app in list(apps) if apps is not None else list(self._requests) + list(self._samples):
                self._requests.pop(app, None)
                self._samples.pop(app, None)


class ExchangeBuffer:
    """The last ``per_app`` recorded requests of each app, with their responses, for replay.

    Bodies are capped by the serving side (1 MiB), so the ring's memory is bounded by
    apps x per_app x 2 MiB at worst; the default of 50 keeps a typical app's ring in kilobytes."""

    def __init__(self, per_app: int = 50) -> None:
        self._per_app = max(1, per_app)
        self._rings: dict[str, deque[RecordedExchange]] = {}
        self._lock = threading.Lock()

    @property
    def per_app(self) -> int:
        return self._per_app

    def resize(self, per_app: int) -> None:
        """Keep ``per_app`` exchanges per app from now on (the newest ones, when shrinking)."""
        with self._lock:
            self._per_app = max(1, per_app)
            for app, ring in self._rings.items():
                self._rings[app] = deque(ring, maxlen=self._per_app)

    def add(self, exchange: RecordedExchange) -> None:
        with self._lock:
            ring = self._rings.get(exchange.app)
            if ring is None:
                ring = self._rings[exchange.app] = deque(maxlen=self._per_app)
            ring.append(exchange)

    def exchanges(self, app: str) -> list[RecordedExchange]:
        """Oldest first."""
        with self._lock:
            return list(self._rings.get(app, ()))

    def forget(self, app: str) -> None:
        with self._lock:
            self._rings.pop(app, None)
