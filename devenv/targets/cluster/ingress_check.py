"""Is the app answering through the cluster's HTTP entry? (host port → load balancer → Traefik →
Service → pod). Ready pods are not enough: the ingress controller must have picked up the route.

Apps are routed by host (``NAME.localhost``; see resources.py). Browsers and curl send
``*.localhost`` to the loopback address on their own, but the system resolver (and so Python) may
not: without systemd's nss-myhostname, ``getaddrinfo("hello.localhost")`` fails. So for a
``*.localhost`` URL we connect to 127.0.0.1 on the URL's port and send the name in the Host
header, which is what the Ingress rule matches on.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from devenv.targets.base import loopback_target
from devenv.targets.cluster.resources import HEALTH_PATH


async def wait_until_routed(url: str, timeout_s: float, interval_s: float = 0.2) -> str:
    """Poll Spin's health route through ``url`` until it answers 200; returns "" or the last problem."""
    target, headers = loopback_target(url.rstrip("/") + HEALTH_PATH)
    deadline = time.monotonic() + timeout_s
    problem = "not tried"
    timeout = aiohttp.ClientTimeout(total=min(5.0, max(timeout_s, 0.1)))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.get(target, headers=headers, allow_redirects=False) as resp:
                    if resp.status == 200:
                        return ""
                    # Traefik answers 404 before it knows the route and 502/503 with no endpoints.
                    problem = f"HTTP {resp.status} from {url}"
            except (TimeoutError, aiohttp.ClientError, OSError) as err:
                problem = f"{type(err).__name__}: {err}"
            if time.monotonic() >= deadline:
                return problem
            await asyncio.sleep(interval_s)
