"""No leak across requests: many requests through one runner keep the process's memory flat.
(The 10,000-request soak is in bench/component_latency.py; this is the suite's short version.)"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from devenv.model import LogStream, Route
from devenv.targets.local.executor import GuestRequest
from tests.targets.test_component_host import echo, hello, runtime  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

REQUESTS = 2000
WARMUP = 200
MAX_GROWTH_MB = 24.0  # what 2,000 requests may add after warm-up (a leak of 12 KB per request fails)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status here")


def test_rss_stays_flat_over_2000_requests(echo) -> None:  # noqa: F811
    def ignore(stream: LogStream, text: str) -> None:
        pass

    # A POST with a body, a response body, headers and guest prints: every kind of host object.
    req = GuestRequest(
        method="POST",
        path="/echo-py/echo",
        query="",
        headers=(("host", "127.0.0.1"), ("x-soak", "1")),
        body=b"x" * 4096,
        route=Route("/echo-py/..."),
        request_id="soak",
    )
    for _ in range(WARMUP):
        echo.handle(req, ignore)
    gc.collect()
    before = rss_mb()
    for _ in range(REQUESTS):
        response, _ = echo.handle(req, ignore)
        assert response.status == 200
    gc.collect()
    growth = rss_mb() - before
    assert growth < MAX_GROWTH_MB, f"RSS grew {growth:.1f} MB over {REQUESTS} requests"
