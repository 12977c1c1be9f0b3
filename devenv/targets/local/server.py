"""The local target's HTTP server: aiohttp on its own thread and event loop, guests in a thread pool.

Nothing here runs on the caller's loop (the engine's, or the TUI's): ``LocalServer`` owns a thread
with an event loop that accepts connections, and a small pool of worker threads that run guests
(wasmtime releases the GIL while wasm runs). One listening port per app; each port serves the
version currently swapped in for its app.

Under load or faults the server stays bounded: guests are admitted by a ``GuestScheduler``
(a bounded waiting line, answered 503 with Retry-After when full; no route may hold every
thread), a request's deadline counts from its arrival, and a request whose client went away
while it waited never runs. A malformed request costs one log line, not a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aiohttp import web
from aiohttp.web_server import Server

from devenv.errors import DeployError, TargetUnavailable
from devenv.model import LogStream, RecordedExchange
from devenv.targets.base import REPLAY_HEADER
from devenv.targets.local.accepting import PortAcceptor
from devenv.targets.local.executor import ExecutionStats, GuestError, GuestRequest, GuestResponse
from devenv.targets.local.guest_pool import GuestPool, GuestScheduler, QueueFull
from devenv.targets.local.messages import GuestOutput, ServedRequest
from devenv.targets.local.router import RouteEntry, ServingVersion

T = TypeVar("T")
LISTEN_BACKLOG = 1024  # connections the kernel queues for a port before it refuses more
SHUTDOWN_GRACE_S = 2.0  # how long close/remove waits for requests in flight
MAX_BODY_BYTES = 64 * 1024 * 1024  # aiohttp's default (1 MiB) would refuse ordinary uploads
WAITING_PER_WORKER = 16  # requests that may wait for a guest thread, per thread, before 503s
MIN_WAITING = 64  # ... and at least this many: a browser or a load test opens dozens at once
RETRY_AFTER_S = "1"
_TEXT = (("Content-Type", "text/plain"),)
_request_ids = itertools.count(1)

__all__ = ["LocalServer", "RequestObserver", "ServedRequest", "GuestOutput", "bind_listener"]


class RequestObserver(Protocol):
    """Told about every request; called from the server's threads (loop or guest pool)."""

    def request_served(self, served: ServedRequest) -> None: ...

    def guest_output(self, output: GuestOutput) -> None: ...


class _OneLineLog:
    """What aiohttp logs about a connection (a malformed request, a client that vanished), as
    one line for the app's log: its default is a 12-line traceback on stderr, over the
    dashboard (in-process) or into a serving process's log file, without bound."""

    def __init__(self, note: Callable[[str], None]) -> None:
        self._note = note

    def _line(self, msg: object, *args: object, exc_info: object = None, **_: object) -> None:
        text = str(msg) % args if args else str(msg)
        if isinstance(exc_info, BaseException):
            # aiohttp's parse errors carry their reason in ``message``, over several lines.
            reason = str(getattr(exc_info, "message", "") or exc_info)
            detail = [line.strip() for line in reason.splitlines() if line.strip()]
            text += f": {type(exc_info).__name__}" + (f": {' '.join(detail)[:200]}" if detail else "")
        self._note(text)

    exception = error = warning = _line

    def info(self, *_: object, **__: object) -> None:
        pass

    debug = info

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging.Logger's name
        return level >= 30


@dataclass(frozen=True)
class _Listener:
    """One app's port: what accepts its connections, and the aiohttp server they go to."""

    acceptor: PortAcceptor
    server: Server


class LocalServer:
    def __init__(
        self,
        host: str,
        observer: RequestObserver,
        workers: int = 4,
        *,
        request_id_prefix: str = "",
        shared_accept: bool = False,
        waiting_per_worker: int | None = None,
        record_body_bytes: int = 1024 * 1024,
    ) -> None:
        """``request_id_prefix``: keeps request ids unique when several processes serve (each
        counts from 1). ``shared_accept``: this process shares its listening sockets with
        others (guest_worker.py) and accepts one connection per wake-up.
        ``record_body_bytes``: the cap on each body kept while ``recording`` is on."""
        self.host = host
        self.request_id_prefix = request_id_prefix
        self.shared_accept = shared_accept
        self.recording = False  # set from any thread: read once per request
        self.record_body_bytes = record_body_bytes
        self._observer = observer
        self._workers = workers
        self._waiting_per_worker = waiting_per_worker
        self._pool: GuestPool | None = None
        self._scheduler: GuestScheduler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._versions: dict[str, ServingVersion] = {}  # touched only on the server loop
        self._listeners: dict[str, _Listener] = {}

    # --- lifecycle (called from any thread) ----------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        # One thread more than ``workers``: the one no single path may take (GuestScheduler).
        self._pool = GuestPool(self._workers + 1)
        per_worker = WAITING_PER_WORKER if self._waiting_per_worker is None else self._waiting_per_worker
        waiting = max(MIN_WAITING, self._workers * per_worker)
        self._scheduler = GuestScheduler(self._pool, self._workers, waiting)
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="wasmdev-http", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=10):
            raise TargetUnavailable(what="the local HTTP server thread did not start", where="local target")

    def stop(self, interrupt_guests: Callable[[], None] | None = None) -> None:
        """Close every port (requests in flight get ``SHUTDOWN_GRACE_S``), then stop the threads.
        ``interrupt_guests`` runs once the ports are closed, before the guest threads are
        joined: a guest that started during the grace period must not outlive this either."""
        if self._thread is None or self._loop is None:
            return
        try:
            self.call(self._close_all())
        finally:
            if interrupt_guests is not None:
                interrupt_guests()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None
            self._thread = None
            self._loop = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "LocalServer.start() first"
        return self._loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the server loop from the caller's loop."""
        assert self._loop is not None, "LocalServer.start() first"
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server loop from a plain thread (not a loop) and wait for it."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    # --- on the server loop -----------------------------------------------------------------------

    async def listen(self, app: str, port: int, sock: socket.socket | None = None) -> int:
        """Serve ``app`` on ``sock`` (a bound, listening socket this server then owns) or on a
        new socket bound to ``port`` (idempotent); returns the bound port (useful with port 0)."""
        if app in self._listeners:
            if sock is not None:
                sock.close()
            return self._listeners[app].acceptor.port
        loop = asyncio.get_running_loop()
        server = Server(
            self._handler_for(app),
            request_factory=_request_factory(server_loop=loop),
            access_log=None,
            # A client that gives up cancels its request: one still waiting for a guest
            # thread then never runs (GuestScheduler).
            handler_cancellation=True,
            logger=_OneLineLog(lambda text: self._system_note(app, text)),
        )
        if sock is None:
            sock = bind_listener(self.host, port, app)
        sock.listen(LISTEN_BACKLOG)
        # Accepted by PortAcceptor, not ``loop.create_server``: asyncio's server drops (without
        # closing) a connection it took just before it closed, and remove() closes while an
        # app moves under traffic. asyncio would also accept up to ``backlog`` connections per
        # wake-up, so the first process to wake would take a whole burst (wrk's or a browser's
        # connections) and serve it alone: with a shared socket one per wake-up lets the
        # processes take turns.
        acceptor = PortAcceptor(
            sock,
            server,
            per_wakeup=1 if self.shared_accept else LISTEN_BACKLOG,
            on_error=lambda text: self._system_note(app, text),
        )
        acceptor.start()
        self._listeners[app] = _Listener(acceptor, server)
        return acceptor.port

    def serves(self, app: str) -> bool:
        """``app`` has a version or a port here (on the server loop)."""
        return app in self._versions or app in self._listeners

    async def swap(self, app: str, version: ServingVersion) -> None:
        """Make ``version`` serve new requests; the old one retires when its last request ends."""
        old = self._versions.get(app)
        self._versions[app] = version
        if old is not None and old is not version:
            old.retire()

    async def remove(self, app: str) -> None:
        old = self._versions.get(app)
        listener = self._listeners.pop(app, None)
        if listener is not None:
            # This server's copy of the socket closes (connections still queued go to whoever
            # holds another); connections it took are aiohttp's before shutdown() looks.
            await listener.acceptor.stop()
            # Close keep-alive connections too, letting requests in flight finish (bounded).
            await listener.server.shutdown(timeout=SHUTDOWN_GRACE_S)
        # After the port: a request on a connection taken before the port closed is served by
        # this version, not answered that the app has none. (A version swapped in meanwhile
        # retired this one and stays.)
        if old is not None:
            if self._versions.get(app) is old:
                del self._versions[app]
            old.retire()

    async def _close_all(self) -> None:
        # All at once: each app may wait out SHUTDOWN_GRACE_S twice, and stop() gives this 30 s.
        apps = dict.fromkeys([*self._listeners, *self._versions])
        await asyncio.gather(*(self.remove(app) for app in apps))

    def _handler_for(self, app: str) -> Callable[[web.BaseRequest], Coroutine[Any, Any, web.StreamResponse]]:
        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            return await self._handle(app, request)

        return handle

    def _system_note(self, app: str, text: str) -> None:
        self._observer.guest_output(GuestOutput(app, "", "", LogStream.SYSTEM, text, time.time()))

    async def _handle(self, app: str, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        arrived = time.monotonic()
        path, _, query = request.raw_path.partition("?")
        version = self._versions.get(app)
        if version is None:
            return web.Response(status=503, text=f"wasmdev: app `{app}` has no version deployed yet\n")
        entry = version.match(path)
        if entry is None:
            self._report_refusal(app, "", request.method, path, 404, started)
            return self._not_found(app, path, version)
        # The lease is taken before any await: reading the body yields to the loop, and a swap
        # meanwhile must not clean up (delete the staged files of) the version picked here.
        version.acquire()
        try:
            # No await for a request without a body (most GETs): one task step less per request.
            body = await request.read() if request.body_exists else b""
            guest_request = self._guest_request(request, path, query, body, entry, arrived)
            assert self._scheduler is not None
            job = self._scheduler.submit(
                path, self._execute, (version, app, entry, guest_request, started), version.release
            )
        except QueueFull:
            version.release()
            component = entry.runner.component_id
            self._report_refusal(app, component, request.method, path, 503, started, "every guest thread is busy")
            return web.Response(
                status=503,
                headers={"Retry-After": RETRY_AFTER_S},
                text=f"wasmdev: app `{app}` is busy (every guest thread is taken and the line is full); retry\n",
            )
        except BaseException:
            version.release()
            raise
        # From here the pool thread releases the lease when the guest is done (or the scheduler
        # does, for a request cancelled before it started). If this handler is cancelled (the
        # client went away), a running guest is told and stops at its next check.
        try:
            response = await job
        except asyncio.CancelledError:
            if guest_request.client_gone is not None:
                guest_request.client_gone.set()
            raise
        return web.Response(status=response.status, headers=response.headers, body=response.body)

    def _report_refusal(
        self, app: str, component: str, method: str, path: str, status: int, started: float, failure: str = ""
    ) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        request_id = f"{self.request_id_prefix}{next(_request_ids):06x}"
        served = ServedRequest(
            app, component, method, path, status, latency_ms, request_id, ExecutionStats(), failure, time.time()
        )
        self._observer.request_served(served)

    def _guest_request(
        self, request: web.BaseRequest, path: str, query: str, body: bytes, entry: RouteEntry, arrived: float
    ) -> GuestRequest:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        return GuestRequest(
            method=request.method,
            path=path,
            query=query,
            headers=tuple(request.headers.items()),
            body=body,
            route=entry.manifest,
            request_id=f"{self.request_id_prefix}{next(_request_ids):06x}",
            client_addr=peer[0] if peer else "127.0.0.1",
            client_port=peer[1] if peer else 0,
            server_host=sock[0] if sock else self.host,
            server_port=sock[1] if sock else 0,
            deadline=arrived + self._timeout_s(entry),
            client_gone=threading.Event(),
        )

    def _execute(
        self, version: ServingVersion, app: str, entry: RouteEntry, request: GuestRequest, started: float
    ) -> GuestResponse:
        """Run the guest, report the request and release ``version``'s lease, on a pool thread.

        Reporting here rather than on the loop keeps the loop thread (the one every request
        passes through) to parsing and writing HTTP; the latency recorded runs from the
        request's arrival to its response being ready."""
        try:
            return self._run_guest(app, entry, request, started)
        finally:
            version.release()

    def _run_guest(self, app: str, entry: RouteEntry, request: GuestRequest, started: float) -> GuestResponse:
        component = entry.runner.component_id
        observer = self._observer

        def log(stream: LogStream, text: str) -> None:
            observer.guest_output(GuestOutput(app, component, request.request_id, stream, text, time.time()))

        if request.deadline and time.monotonic() >= request.deadline:
            # Waited out its whole deadline for a thread: running it now would only make the
            # line behind it wait longer.
            failure = "waited for a guest thread until its deadline"
            body = f"wasmdev: app `{app}` is busy; this request waited past its deadline\n"
            response = GuestResponse(503, (*_TEXT, ("Retry-After", RETRY_AFTER_S)), body.encode())
            latency_ms = (time.perf_counter() - started) * 1000
            observer.request_served(
                ServedRequest(app, component, request.method, request.path, 503, latency_ms,
                              request.request_id, ExecutionStats(), failure, time.time())
            )  # fmt: skip
            return response

        failure = ""
        try:
            response, stats = entry.runner.handle(request, log)
        except GuestError as err:
            failure = err.reason
            body = f"wasmdev: component `{component}` failed this request: {err.reason}\n"
            response, stats = GuestResponse(500, _TEXT, body.encode()), err.stats
        except Exception as err:  # a host bug must cost one request, not the server
            failure = f"host error: {type(err).__name__}: {err}"
            body = f"wasmdev: internal error running component `{component}`: {failure}\n"
            response, stats = GuestResponse(500, _TEXT, body.encode()), ExecutionStats()
        latency_ms = (time.perf_counter() - started) * 1000
        exchange = self._exchange(app, component, request, response, latency_ms) if self.recording else None
        served = ServedRequest(
            app,
            component,
            request.method,
            request.path,
            response.status,
            latency_ms,
            request.request_id,
            stats,
            failure,
            time.time(),
            exchange,
        )
        observer.request_served(served)
        return response

    def _exchange(
        self, app: str, component: str, request: GuestRequest, response: GuestResponse, latency_ms: float
    ) -> RecordedExchange | None:
        """The request and response as served, for replay; None for wasmdev's own replays.
        Bodies are referenced, not copied, unless they must be cut at the cap."""
        for name, _ in request.headers:
            if len(name) == len(REPLAY_HEADER) and name.lower() == REPLAY_HEADER:
                return None
        cap = self.record_body_bytes
        body, response_body = request.body, response.body
        return RecordedExchange(
            ts=time.time(),
            app=app,
            request_id=request.request_id,
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            body=body if len(body) <= cap else body[:cap],
            status=response.status,
            response_headers=response.headers,
            response_body=response_body if len(response_body) <= cap else response_body[:cap],
            latency_ms=latency_ms,
            body_truncated=len(body) > cap,
            response_truncated=len(response_body) > cap,
            component=component,
        )

    def _timeout_s(self, entry: RouteEntry) -> float:
        return entry.runner.timeout_s

    @staticmethod
    def _not_found(app: str, path: str, version: ServingVersion) -> web.Response:
        lines = [f"wasmdev: no route of app `{app}` matches {path}", "routes:", *version.route_lines()]
        return web.Response(status=404, text="\n".join(lines) + "\n")


def bind_listener(host: str, port: int, app: str) -> socket.socket:
    """A listening TCP socket on ``host:port`` for ``app``; DeployError says what to change."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise DeployError(
                what=f"port {port} on {host} is already in use",
                where=f"app `{app}` on the local target",
                fix=f"stop whatever listens on {port}, or give the app another port: set "
                f"[apps.{app}].port or [local].base_port in wasmdev.toml",
            ) from None
        raise DeployError(
            what=f"cannot listen on {host}:{port}: {err.strerror or err}",
            where=f"app `{app}` on the local target",
            fix="set [local].host / [apps.NAME].port in wasmdev.toml",
        ) from None
    # Non-blocking, and so must every copy be: O_NONBLOCK belongs to the open file, which every
    # dup (``socket.dup`` copies the timeout) and every serving process shares. One blocking copy
    # and an event loop's accept() blocks when another process took the connection first.
    sock.setblocking(False)
    return sock


def _request_factory(server_loop: asyncio.AbstractEventLoop) -> Callable[..., web.BaseRequest]:
    def make(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
        return web.BaseRequest(
            message, payload, protocol, writer, task, server_loop, client_max_size=MAX_BODY_BYTES
        )

    return make
