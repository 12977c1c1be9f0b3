"""The local target's HTTP server: aiohttp on one event loop, guests in a thread pool.

``LocalServer`` accepts connections on one loop: the engine's, for wasmdev's own server (so one
loop touches every socket: the apps' ports, Spin's proxy, the control endpoint), or a thread of
its own in a serving process, whose main thread waits on its pipe. Guests never run on that loop:
a small pool of worker threads runs them (wasmtime releases the GIL while wasm runs), and what
happens there (the guest's run, the request's report and recording) is guest_calls.py's. One
listening port per app; each port serves the version currently swapped in for its app.

Under load or faults the server stays bounded: guests are admitted by a ``GuestScheduler``
(a bounded waiting line, answered 503 with Retry-After when full; no route may hold every
thread), a request's deadline counts from its arrival, and a request whose client went away
while it waited never runs. A malformed request costs one log line, not a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.web_server import Server

from devenv.errors import DeployError, TargetUnavailable
from devenv.model import LogStream
from devenv.targets.local.accepting import PortAcceptor
from devenv.targets.local.executor import GuestRequest
from devenv.targets.local.guest_calls import RETRY_AFTER_S, GuestCalls, RequestObserver
from devenv.targets.local.guest_pool import GuestPool, GuestScheduler, QueueFull
from devenv.targets.local.messages import GuestOutput
from devenv.targets.local.router import RouteEntry, ServingVersion

T = TypeVar("T")
LISTEN_BACKLOG = 1024  # connections the kernel queues for a port before it refuses more
SHUTDOWN_GRACE_S = 2.0  # how long close/remove waits for requests in flight
MAX_BODY_BYTES = 64 * 1024 * 1024  # aiohttp's default (1 MiB) would refuse ordinary uploads
CALL_TIMEOUT_S = 30.0  # the longest call onto the server loop: closing every port at once
WAITING_PER_WORKER = 16  # requests that may wait for a guest thread, per thread, before 503s
MIN_WAITING = 64  # ... and at least this many: a browser or a load test opens dozens at once

__all__ = ["LISTEN_BACKLOG", "MAX_BODY_BYTES", "LocalServer", "bind_listener"]


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
        """``shared_accept``: this process shares its listening sockets with others
        (guest_worker.py) and accepts one connection per wake-up. ``request_id_prefix`` and
        ``record_body_bytes``: see ``GuestCalls``, which runs and reports each request."""
        self.host = host
        self.shared_accept = shared_accept
        self.calls = GuestCalls(observer, request_id_prefix, record_body_bytes)
        self._workers = workers
        self._waiting_per_worker = waiting_per_worker
        self._pool: GuestPool | None = None
        self._scheduler: GuestScheduler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._versions: dict[str, ServingVersion] = {}  # touched only on the server loop
        self._listeners: dict[str, _Listener] = {}

    # --- lifecycle (called from any thread) ----------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Serve on ``loop``, the caller's running loop (the local target serves on the engine's,
        so one loop touches every socket), or without one on a thread and loop of its own (a
        serving process, whose main thread waits on its pipe; tests driving it from threads)."""
        if self._loop is not None:
            return
        # One thread more than ``workers``: the one no single path may take (GuestScheduler).
        self._pool = GuestPool(self._workers + 1)
        per_worker = WAITING_PER_WORKER if self._waiting_per_worker is None else self._waiting_per_worker
        waiting = max(MIN_WAITING, self._workers * per_worker)
        self._scheduler = GuestScheduler(self._pool, self._workers, waiting)
        if loop is not None:
            self._loop = loop
            return
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

    async def close(self, interrupt_guests: Callable[[], None] | None = None) -> None:
        """Close every port (requests in flight get ``SHUTDOWN_GRACE_S``), then stop the guest
        threads (and the server's own thread, if it has one). ``interrupt_guests`` runs once the
        ports are closed, before the guest threads are joined: a guest that started during the
        grace period must not outlive this either."""
        if self._loop is None:
            return
        try:
            await asyncio.wait_for(self.run(self._close_all()), CALL_TIMEOUT_S)
        finally:
            if interrupt_guests is not None:
                interrupt_guests()
            await asyncio.to_thread(self._stop_threads)

    def stop(self, interrupt_guests: Callable[[], None] | None = None) -> None:
        """``close()`` from a plain thread, for a server on a thread of its own."""
        if self._loop is None:
            return
        assert self._thread is not None, "a server on its caller's loop is closed with close()"
        try:
            self.call(self._close_all())
        finally:
            if interrupt_guests is not None:
                interrupt_guests()
            self._stop_threads()

    def _stop_threads(self) -> None:
        """Blocking: joins the guest threads, and the server's thread if it has one."""
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._thread = None
        self._loop = None

    @property
    def recording(self) -> bool:
        return self.calls.recording

    @recording.setter
    def recording(self, on: bool) -> None:
        """Set from any thread: each request reads it once."""
        self.calls.recording = on

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "LocalServer.start() first"
        return self._loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the server loop from any loop (directly when it is this one)."""
        assert self._loop is not None, "LocalServer.start() first"
        if asyncio.get_running_loop() is self._loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server loop from a plain thread (not a loop) and wait for it."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=CALL_TIMEOUT_S)

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
        # All at once: each app may wait out SHUTDOWN_GRACE_S twice, within CALL_TIMEOUT_S.
        apps = dict.fromkeys([*self._listeners, *self._versions])
        await asyncio.gather(*(self.remove(app) for app in apps))

    def _handler_for(self, app: str) -> Callable[[web.BaseRequest], Coroutine[Any, Any, web.StreamResponse]]:
        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            return await self._handle(app, request)

        return handle

    def _system_note(self, app: str, text: str) -> None:
        self.calls.observer.guest_output(GuestOutput(app, "", "", LogStream.SYSTEM, text, time.time()))

    async def _handle(self, app: str, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        arrived = time.monotonic()
        path, _, query = request.raw_path.partition("?")
        version = self._versions.get(app)
        if version is None:
            return web.Response(status=503, text=f"wasmdev: app `{app}` has no version deployed yet\n")
        entry = version.match(path)
        if entry is None:
            self.calls.refused(app, "", request.method, path, 404, started)
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
                path, self.calls.execute, (version, app, entry, guest_request, started), version.release
            )
        except QueueFull:
            version.release()
            component = entry.runner.component_id
            self.calls.refused(app, component, request.method, path, 503, started, "every guest thread is busy")
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
            request_id=self.calls.next_id(),
            client_addr=peer[0] if peer else "127.0.0.1",
            client_port=peer[1] if peer else 0,
            server_host=sock[0] if sock else self.host,
            server_port=sock[1] if sock else 0,
            deadline=arrived + entry.runner.timeout_s,
            client_gone=threading.Event(),
        )

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
