"""Samplers the dashboard graphs: per-app resource use, and optional latency probes per URL.

``ResourceSampler`` turns a target's cumulative counters (``usage(app)``: guest CPU seconds,
linear-memory high-water mark, requests and errors so far) into one ``ResourceSampled`` per app
per interval: CPU as a percentage of one core over the interval, requests per second over the
interval. It samples a target with the ``ReportsUsage`` ability (targets/base.py); the cluster
targets report pod metrics themselves.

``Prober`` sends a real HTTP GET to each URL of every serving app at the configured interval and
records it as ``RequestRecord(probe=True)``, so the latency graph has points when nobody is
sending traffic. Probes carry an ``x-wasmdev-probe: 1`` header so a target may tell them apart.
Cluster apps are served at ``http://NAME.localhost:PORT/`` (one Ingress host rule per app); the
system resolver may not map ``*.localhost`` to loopback, so such URLs are probed on 127.0.0.1 with
the name in the Host header, which is what the ingress routes on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from devenv.model import AppStatus, RequestRecord, ResourceSample
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.base import PROBE_HEADER, ReportsUsage, UsageCounters, loopback_target

log = logging.getLogger(__name__)

PROBE_FAILED_STATUS = 599  # no HTTP answer at all (refused, reset, timed out): counted as an error
_LIVE = (AppStatus.SERVING, AppStatus.DEGRADED)


@dataclass(frozen=True)
class _Reading:
    at: float  # time.monotonic()
    cpu_seconds: float
    requests: int


class ResourceSampler:
    def __init__(self, store: Store, target: ReportsUsage, interval_s: float = 1.0) -> None:
        self.store = store
        self.target = target
        self.interval_s = interval_s
        self._last: dict[str, _Reading] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.sample_once()

    async def sample_once(self) -> list[ResourceSample]:
        """Read every live app's counters and dispatch a sample per app seen twice or more."""
        samples: list[ResourceSample] = []
        live = {name for name, app in self.store.state.apps.items() if app.status in _LIVE}
        for name in list(self._last):
            if name not in live:
                del self._last[name]  # a removed app must not leak its reading
        for name in sorted(live):
            counters = await self._usage(name)
            if counters is None:
                continue
            now = time.monotonic()
            reading = _Reading(now, float(counters.cpu_seconds_total), int(counters.requests_total))
            previous = self._last.get(name)
            self._last[name] = reading
            if previous is None or now <= previous.at:
                continue
            wall = now - previous.at
            # Counters restart from zero when an app is redeployed; a negative delta means that.
            cpu = max(0.0, reading.cpu_seconds - previous.cpu_seconds)
            requests = max(0, reading.requests - previous.requests)
            sample = ResourceSample(
                ts=time.time(),
                app=name,
                cpu_percent=cpu / wall * 100,
                memory_bytes=int(counters.memory_high_water_bytes),
                requests_per_second=requests / wall,
                source="local",
            )
            samples.append(sample)
            self.store.dispatch(a.ResourceSampled(sample))
        return samples

    async def _usage(self, app: str) -> UsageCounters | None:
        try:
            result = self.target.usage(app)
            if inspect.isawaitable(result):
                return await result
            return result
        except (KeyError, LookupError):
            return None
        except Exception:  # sampling is best effort: a failing read must not stop the loop
            log.debug("usage(%s) failed", app, exc_info=True)
            return None


class Prober:
    def __init__(self, store: Store, interval_s: float, timeout_s: float = 5.0) -> None:
        self.store = store
        self.interval_s = interval_s
        self.timeout_s = timeout_s

    async def run(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await asyncio.sleep(self.interval_s)
                targets = [
                    (name, url)
                    for name, app in self.store.state.apps.items()
                    if app.status in _LIVE
                    for url in app.urls
                ]
                await asyncio.gather(*(self._probe(session, name, url) for name, url in targets))

    async def _probe(self, session: Any, app: str, url: str) -> None:
        import aiohttp

        target, headers = loopback_target(url)
        started = time.perf_counter()
        try:
            async with session.get(
                target, headers={**headers, PROBE_HEADER: "1"}, allow_redirects=False
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            status = PROBE_FAILED_STATUS
        latency_ms = (time.perf_counter() - started) * 1000
        path = urlsplit(url).path or "/"
        self.store.dispatch(
            a.RequestServed(
                RequestRecord(
                    ts=time.time(),
                    app=app,
                    component="",
                    method="GET",
                    path=path,
                    status=status,
                    latency_ms=latency_ms,
                    probe=True,
                )
            )
        )
