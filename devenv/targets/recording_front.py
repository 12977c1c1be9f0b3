"""A front for the cluster targets: each app's URL is served on a wasmdev port on 127.0.0.1 that
proxies to the cluster's ingress, so cluster apps get what local ones have: every request in the
latency graph and the request log, and real requests recorded (RecordedExchange) for replay.

Wraps a cluster target (deploys, rollbacks and removals go to it unchanged) and swaps the URLs
it returns for the front's. Requests carrying ``x-wasmdev-replay`` (replays, load tests) are
served and measured but not recorded; wasmdev's own probes are left to the prober's figures.

Responses are streamed to the client as they arrive (a large download or a slow stream is never
held whole in memory); only their first ``record_body_bytes`` are kept for the recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from devenv.config import LocalSettings
from devenv.errors import DeployError
from devenv.model import BuiltApp, LogLine, LogStream, RecordedExchange, RequestRecord
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.base import (
    PROBE_HEADER,
    REPLAY_HEADER,
    DeployResult,
    KeepsImages,
    Target,
    loopback_target,
)

MAX_BODY_BYTES = 64 * 1024 * 1024  # larger requests are refused (413), as a dev proxy
CHUNK_BYTES = 64 * 1024
# No total timeout (a slow handler or a long download is the app's business), but an upstream
# silent this long between two chunks is taken as gone: a dead ingress does not hold a handler.
UPSTREAM_READ_TIMEOUT_S = 300.0
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


class ClusterTarget(Target, KeepsImages, Protocol):
    """The cluster targets (kube, k3d): a Target that keeps its builds' images."""


class _AppFront:
    """One app's port: forwards every request to ``upstream`` (the app's ingress URL)."""

    def __init__(
        self, store: Store, app: str, upstream: str, session: aiohttp.ClientSession, record_body_bytes: int
    ) -> None:
        self.store = store
        self.record_body_bytes = record_body_bytes
        self.app = app
        self.upstream = upstream
        self.session = session
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._ids = itertools.count(1)

    async def start(self, host: str, port: int) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            try:
                sock.bind((host, port))
            except OSError:
                if port == 0:
                    raise
                sock.bind((host, 0))  # the app's usual port is taken: any port beats no front
        except OSError as err:
            sock.close()
            raise DeployError(
                what=f"app {self.app}: wasmdev cannot open a port on {host} in front of the cluster: "
                f"{err.strerror or err}",
                where="[local].host",
                fix="set [local].host in wasmdev.toml to an address of this machine (127.0.0.1)",
            ) from None
        self.port = sock.getsockname()[1]
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.SockSite(self.runner, sock).start()

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = f"f-{next(self._ids):06d}"
        body = await request.read()
        target, extra = loopback_target(self.upstream.rstrip("/") + request.raw_path)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        headers += list(extra.items())
        cap = self.record_body_bytes
        kept = bytearray()  # the response body's first ``cap`` bytes, for the recording
        size = 0
        status = 502
        response_headers: list[tuple[str, str]] = []
        response: web.StreamResponse | None = None
        try:
            async with self.session.request(
                request.method, target, headers=headers, data=body or None, allow_redirects=False
            ) as upstream:
                status = upstream.status
                response_headers = [
                    (k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP
                ]
                response = web.StreamResponse(status=status)
                for name, value in response_headers:
                    response.headers.add(name, value)
                if upstream.content_length is not None and request.method != "HEAD":
                    response.content_length = upstream.content_length
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                    size += len(chunk)
                    if len(kept) < cap:
                        kept += chunk[: cap - len(kept)]
                    await response.write(chunk)
                await response.write_eof()
        except (aiohttp.ClientError, TimeoutError) as err:
            if response is not None:
                raise  # cut off mid-stream: the client sees the connection end, as it would upstream
            kept = bytearray(
                f"wasmdev: the cluster's ingress at {self.upstream} did not answer for app {self.app}: "
                f"{err or type(err).__name__}\n".encode()
            )
            size = len(kept)
            response_headers = [("Content-Type", "text/plain; charset=utf-8")]
            response = web.Response(status=502, body=bytes(kept), headers=response_headers)
        finally:
            latency_ms = (time.perf_counter() - started) * 1000
            self._report(
                request,
                request_id,
                body,
                _Response(status, response_headers, bytes(kept), truncated=size > len(kept)),
                latency_ms,
            )
        return response

    def _report(
        self, request: web.Request, request_id: str, body: bytes, response: _Response, latency_ms: float
    ) -> None:
        if PROBE_HEADER in request.headers:
            return  # the prober reports its own figure
        now = time.time()
        path = request.rel_url.path
        status = response.status
        self.store.dispatch(
            a.RequestServed(
                RequestRecord(
                    ts=now,
                    app=self.app,
                    component="",
                    method=request.method,
                    path=path,
                    status=status,
                    latency_ms=latency_ms,
                    request_id=request_id,
                )
            )
        )
        level = "error" if status >= 500 else ("warn" if status >= 400 else "info")
        text = f"{request.method} {path} {status} {latency_ms:.1f}ms (via the cluster)"
        self.store.dispatch(
            a.LogEmitted(
                LogLine(
                    ts=now,
                    app=self.app,
                    stream=LogStream.REQUEST,
                    text=text,
                    request_id=request_id,
                    level=level,
                )
            )
        )
        if REPLAY_HEADER in request.headers:
            return
        cap = self.record_body_bytes
        exchange = RecordedExchange(
            ts=now,
            app=self.app,
            request_id=request_id,
            method=request.method,
            path=path,
            query=request.rel_url.raw_query_string,
            headers=tuple(request.headers.items()),
            body=body[:cap],
            status=status,
            response_headers=tuple(response.headers),
            response_body=response.body,
            latency_ms=latency_ms,
            body_truncated=len(body) > cap,
            response_truncated=response.truncated,
        )
        self.store.dispatch(a.RequestRecorded(exchange))


@dataclass(frozen=True)
class _Response:
    """What the recording keeps of a response: its first bytes, and whether there was more."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    truncated: bool


class RecordingFront:
    """``inner`` with each app served through a port on ``host`` (``ports``: app -> port; an app
    without one gets a free port)."""

    def __init__(
        self,
        inner: ClusterTarget,
        store: Store,
        ports: Mapping[str, int],
        host: str = "127.0.0.1",
        *,
        record_body_bytes: int = LocalSettings.record_body_bytes,
    ) -> None:
        self.inner = inner
        self.record_body_bytes = record_body_bytes
        self.name = inner.name
        self.store = store
        self.ports = dict(ports)
        self.host = host
        self._fronts: dict[str, _AppFront] = {}
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.inner.start()

    async def deploy(self, built: BuiltApp) -> DeployResult:
        return await self._fronted(built.spec.name, await self.inner.deploy(built))

    def kept_image(self, app: str, digest: str) -> str | None:
        return self.inner.kept_image(app, digest)

    async def redeploy_image(self, built: BuiltApp, image: str) -> DeployResult:
        return await self._fronted(built.spec.name, await self.inner.redeploy_image(built, image))

    async def remove(self, app: str) -> None:
        front = self._fronts.pop(app, None)
        if front is not None:
            await front.close()
        await self.inner.remove(app)

    async def close(self) -> None:
        for front in list(self._fronts.values()):
            with contextlib.suppress(Exception):
                await front.close()
        self._fronts.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.inner.close()

    async def _fronted(self, app: str, result: DeployResult) -> DeployResult:
        if not result.urls:
            return result  # no URL this machine can reach: nothing to front
        ingress = result.urls[0]
        parts = urlsplit(ingress)
        upstream = f"{parts.scheme}://{parts.netloc}"
        async with self._lock:
            if self._session is None:
                timeout = aiohttp.ClientTimeout(
                    total=None, sock_connect=10, sock_read=UPSTREAM_READ_TIMEOUT_S
                )
                self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
            front = self._fronts.get(app)
            if front is None:
                front = _AppFront(self.store, app, upstream, self._session, self.record_body_bytes)
                await front.start(self.host, self.ports.get(app, 0))
                self._fronts[app] = front
                self.store.dispatch(
                    a.LogEmitted(
                        LogLine(
                            time.time(),
                            app,
                            LogStream.SYSTEM,
                            f"http://{self.host}:{front.port}/ proxies to {ingress} (requests recorded for replay)",
                        )
                    )
                )
            front.upstream = upstream
        base = f"http://{self.host}:{front.port}"
        urls = tuple(base + (urlsplit(u).path or "/") for u in result.urls) + tuple(result.urls)
        return DeployResult(urls=urls, notes=result.notes)
