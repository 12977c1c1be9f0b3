"""Load test: C connections drive an app (one path, or its recorded requests) for a duration or
a request count, and the figures come back as a LoadReport (req/s, p50/p95/p99, errors).

Why not an existing load generator: wrk and oha are not part of the README's install (a fresh
machine has neither), wrk reports no p95 without a Lua script, and the PyPI generators (locust,
molotov) run as their own programs with their own process model (gevent monkeypatching, a web
UI), which does not fit inside wasmdev's engine loop. aiohttp's client is already a dependency,
keeps C connections alive on one asyncio loop, and each connection's loop below is bounded in
both time and count. The served requests go through the app's real server, so the dashboard's
latency and CPU/memory graphs move while it runs.

Only loopback addresses are driven: this is a dev tool, not a way to load someone else's host.
Requests carry ``x-wasmdev-replay: 1`` so they are not recorded as real traffic.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from devenv.engine.replay import REPLAY_HEADER, is_safe, replay_headers, request_target
from devenv.errors import WasmdevError
from devenv.model import LoadReport, RecordedExchange

MAX_DURATION_S = 600.0
MAX_CONNECTIONS = 256
MAX_REQUESTS = 10_000_000


class LatencyHistogram:
    """Latencies in fixed logarithmic bins (each 1% wider than the one before, 1 µs to 10 min):
    a few thousand counters however many requests a load test sends (up to MAX_REQUESTS), and a
    percentile within 1% of the exact one."""

    LOW_MS = 0.001
    HIGH_MS = 600_000.0
    GROWTH = 1.01

    def __init__(self) -> None:
        self._log_growth = math.log(self.GROWTH)
        self.bins = [0] * (int(math.log(self.HIGH_MS / self.LOW_MS) / self._log_growth) + 2)
        self.count = 0

    def add(self, ms: float) -> None:
        clamped = min(max(ms, self.LOW_MS), self.HIGH_MS)
        self.bins[int(math.log(clamped / self.LOW_MS) / self._log_growth)] += 1
        self.count += 1

    def percentile(self, q: float) -> float:
        """The nearest-rank percentile (q in 0..100): the middle of its bin; NaN when empty."""
        if not self.count:
            return math.nan
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for index, n in enumerate(self.bins):
            seen += n
            if seen >= rank:
                return self.LOW_MS * self.GROWTH ** (index + 0.5)
        return self.HIGH_MS


@dataclass(frozen=True)
class LoadRequest:
    method: str
    target: str  # path and query
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def path_request(path: str) -> LoadRequest:
    return LoadRequest("GET", path if path.startswith("/") else "/" + path, ((REPLAY_HEADER, "1"),))


def recorded_requests(exchanges: Sequence[RecordedExchange], *, all_methods: bool = False) -> list[LoadRequest]:
    """The recorded requests a load test cycles through: whole bodies only, and only safe
    methods unless ``all_methods`` (a load test repeats each one thousands of times)."""
    return [
        LoadRequest(e.method, request_target(e), tuple(replay_headers(e)), e.body)
        for e in exchanges
        if not e.body_truncated and (all_methods or is_safe(e.method))
    ]


def unsafe_count(exchanges: Sequence[RecordedExchange]) -> int:
    return sum(1 for e in exchanges if not is_safe(e.method))


def loopback_origin(origin: str) -> tuple[str, str | None]:
    """The origin to connect to and the Host header to send. A cluster app's ``APP.localhost``
    name is connected on 127.0.0.1 with its name as Host (resolvers differ on *.localhost)."""
    parts = urlsplit(origin)
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return origin, None
    if host.endswith(".localhost"):
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit((parts.scheme, f"127.0.0.1{port}", "", "", "")), parts.netloc
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise WasmdevError(
            what=f"load tests only drive this machine's loopback address, not {host or origin}",
            fix="serve the app locally (or through wasmdev's 127.0.0.1 port) and load that",
        )
    return origin, None


async def run_load(
    app: str,
    origin: str,
    requests: Sequence[LoadRequest],
    *,
    connections: int = 8,
    duration_s: float = 10.0,
    count: int | None = None,
    label: str = "",
    timeout_s: float = 30.0,
) -> LoadReport:
    """Drive ``origin`` with ``requests`` (cycled) until ``duration_s`` passes or ``count``
    requests were sent, whichever comes first."""
    if not requests:
        raise WasmdevError(
            what=f"app {app}: nothing to send", fix="pass --path, or send the app some requests first"
        )
    if not 1 <= connections <= MAX_CONNECTIONS:
        raise WasmdevError(
            what=f"--connections {connections} is out of range", fix=f"use 1 to {MAX_CONNECTIONS}"
        )
    if not 0 < duration_s <= MAX_DURATION_S:
        raise WasmdevError(
            what=f"--duration {duration_s:g}s is out of range", fix=f"use up to {MAX_DURATION_S:.0f}s"
        )
    base, host = loopback_origin(origin)
    budget = min(count, MAX_REQUESTS) if count is not None else MAX_REQUESTS
    latencies = LatencyHistogram()
    errors = 0
    sent = 0
    started = time.monotonic()
    deadline = started + duration_s

    async def connection(session: aiohttp.ClientSession, offset: int) -> None:
        nonlocal errors, sent
        i = offset
        while time.monotonic() < deadline and sent < budget:
            sent += 1
            request = requests[i % len(requests)]
            i += 1
            headers = list(request.headers)
            if host is not None:
                headers.append(("Host", host))
            t0 = time.perf_counter()
            try:
                async with session.request(
                    request.method,
                    base + request.target,
                    headers=headers,
                    data=request.body or None,
                    allow_redirects=False,
                ) as response:
                    await response.read()
                    if response.status >= 500:
                        errors += 1
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
            latencies.add((time.perf_counter() - t0) * 1000)

    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(connection(session, n) for n in range(connections)))
    elapsed = max(time.monotonic() - started, 1e-6)
    return LoadReport(
        app=app,
        ts=time.time(),
        url=label or requests[0].target,
        connections=connections,
        duration_s=elapsed,
        requests=latencies.count,
        errors=errors,
        requests_per_second=latencies.count / elapsed,
        p50_ms=latencies.percentile(50),
        p95_ms=latencies.percentile(95),
        p99_ms=latencies.percentile(99),
    )


def format_load(report: LoadReport) -> list[str]:
    return [
        f"{report.app}: {report.requests} requests to {report.url} over {report.connections} connection(s) "
        f"in {report.duration_s:.1f}s",
        f"  {report.requests_per_second:.1f} req/s   p50 {report.p50_ms:.1f} ms   p95 {report.p95_ms:.1f} ms   "
        f"p99 {report.p99_ms:.1f} ms   errors {report.errors}",
    ]
