"""Serve one app under an installed ``spin up``, behind a proxy on the app's own port.

wasmdev keeps the app's port itself and forwards each request to the current ``spin up``
process, which listens on a private loopback port. That keeps what the embedded runtime gives:
a request record with latency for every request, and a deploy that swaps versions without a
gap: the new process is started on a new private port and must answer before the proxy points
at it; only then is the old one stopped (after its requests in flight finish). A new process that
exits or never answers is stopped and the deploy fails with its output, while the old one keeps
serving. Spin's stdout and stderr (its own messages and the guests' output) become log lines.

Self-contained on purpose: it needs a ``BuiltApp`` (its manifest and routes), a port and its
callbacks, so the local target can hold one per app that needs Spin (spin_apps.py). ``deploy``
may run before ``start``: an app moving over from the embedded host gets a ``spin up`` that
answers before its port is handed over, then ``start()`` binds the port (once), and
``close()`` on removal. ``on_log``, ``on_request`` and ``on_exchange`` are called on the event
loop's thread, with the model's ``LogLine``, ``RequestRecord`` and (while ``recording`` is on,
for real requests only) ``RecordedExchange``: dispatch them as ``LogEmitted``,
``RequestServed`` and ``RequestRecorded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from devenv.errors import DeployError, TargetUnavailable
from devenv.model import BuiltApp, LogLine, LogStream, RecordedExchange, RequestRecord
from devenv.targets.base import REPLAY_HEADER
from devenv.targets.local.accepting import PortAcceptor
from devenv.targets.local.server import LISTEN_BACKLOG, MAX_BODY_BYTES
from devenv.targets.local.spin_cli import SpinCli
from devenv.targets.local.spin_staging import SpinManifest, manifest_for

# Hop-by-hop headers (RFC 9110 §7.6.1) are the proxy's own business on each leg.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
_OUTPUT_KEPT = 40  # lines of a process's output kept for a failed start's message
_request_ids = itertools.count(1)


@dataclass
class _SpinProcess:
    proc: asyncio.subprocess.Process
    port: int
    digest: str
    manifest: SpinManifest
    output: deque[str] = field(default_factory=lambda: deque(maxlen=_OUTPUT_KEPT))
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False  # set when wasmdev stops it: its exit is then no news


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SpinServer:
    """One app served by ``spin up``; ``deploy`` starts or replaces the process."""

    def __init__(
        self,
        spin: SpinCli,
        app: str,
        port: int,
        *,
        host: str = "127.0.0.1",
        on_log: Callable[[LogLine], None],
        on_request: Callable[[RequestRecord], None],
        on_exchange: Callable[[RecordedExchange], None] | None = None,
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 5.0,
        request_timeout_s: float = 30.0,
        record_body_bytes: int = 1024 * 1024,
        runtime_config: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``runtime_config``: Spin's runtime config file (``[local] runtime_config``), passed
        to ``spin up`` as ``--runtime-config-file``. ``record_body_bytes``: the cap on each body
        kept while ``recording`` is on."""
        self.spin = spin
        self.app = app
        self.host = host
        self.port = port
        self.on_log = on_log
        self.on_request = on_request
        self.on_exchange = on_exchange
        self.recording = False  # set from any thread: read once per request
        self.record_body_bytes = record_body_bytes
        self.runtime_config = runtime_config
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.request_timeout_s = request_timeout_s
        self.env = env
        self._current: _SpinProcess | None = None
        self._starting: _SpinProcess | None = None  # the process a deploy waits for
        self._closed = False
        self._built: BuiltApp | None = None
        self._runner: web.BaseRunner | None = None
        self._acceptor: PortAcceptor | None = None
        self._sock: socket.socket | None = None
        self._session: ClientSession | None = None
        self._deploy_lock = asyncio.Lock()

    @property
    def serving_digest(self) -> str | None:
        return self._current.digest if self._current else None

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on the app's port (503 until a deploy answers): on ``sock`` when given (a
        listening socket for that port, which this server then owns: the port the embedded
        host served never closes), else on a new socket."""
        if self._closed:
            if sock is not None:
                sock.close()
            raise self._closed_error()
        if sock is None:
            try:
                family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
                sock = socket.create_server((self.host, self.port), family=family, backlog=LISTEN_BACKLOG)
            except OSError as err:
                raise DeployError(
                    what=f"app {self.app}: cannot listen on {self.host}:{self.port}: {err.strerror or err}",
                    where=f"the app's port ([apps.{self.app}].port or [local].base_port)",
                    fix="stop what uses that port, or give the app another port in wasmdev.toml",
                ) from err
        self._sock = sock  # closed by close(), whatever happens below
        sock.setblocking(False)
        self._session = ClientSession(
            timeout=ClientTimeout(total=self.request_timeout_s), auto_decompress=False
        )
        # Bodies up to the embedded server's cap: aiohttp's default (1 MiB) refuses uploads.
        application = web.Application(client_max_size=MAX_BODY_BYTES)
        application.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        assert self._runner.server is not None
        # Not aiohttp's SockSite: its asyncio server drops, unclosed, a connection taken just
        # before close() while the app moves back to the embedded host (accepting.py).
        self._acceptor = PortAcceptor(
            sock, self._runner.server, per_wakeup=LISTEN_BACKLOG, on_error=lambda text: self._log(LogStream.SYSTEM, text)
        )
        self._acceptor.start()
        self.port = sock.getsockname()[1]  # the one given for port 0

    def hand_over(self) -> socket.socket:
        """A copy of the listening socket for whatever serves the app next: the port stays
        open (connections wait in its queue) while this server closes. Call before ``close``."""
        assert self._sock is not None, "start() first"
        return self._sock.dup()

    async def deploy(self, built: BuiltApp) -> None:
        """Start ``spin up`` for this build and switch to it once it answers; raises DeployError
        (the previous process keeps serving) if it exits or does not answer in time."""
        async with self._deploy_lock:
            if self._closed:
                raise self._closed_error()
            new = self._starting = await self._spawn(built)
            try:
                await self._wait_answering(new, built)
                if self._closed:  # close() ran meanwhile: this process must not outlive it
                    raise self._closed_error()
            except BaseException as err:
                await self._stop(new)
                if self._closed and isinstance(err, DeployError):
                    raise self._closed_error() from None  # stopped by close(), not broken
                raise
            finally:
                self._starting = None
            old, self._current, self._built = self._current, new, built
            self._log(LogStream.SYSTEM, f"serving {built.short_digest} under spin {self.spin.version}")
            if old is not None:
                await self._retire(old)

    async def close(self) -> None:
        """Stop serving; a deploy in flight stops the process it started and fails."""
        self._closed = True
        starting = self._starting
        if starting is not None:
            await self._stop(starting)  # its deploy stops waiting now, not at its timeout
        async with self._deploy_lock:
            if self._acceptor is not None:
                await self._acceptor.stop()  # every connection taken is the runner's, closed below
                self._acceptor = None
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._current is not None:
                await self._stop(self._current)
                self._current = None
            if self._session is not None:
                await self._session.close()
                self._session = None

    def _closed_error(self) -> TargetUnavailable:
        return closed_error(self.app)

    # --- processes -----------------------------------------------------------------------------

    async def _spawn(self, built: BuiltApp) -> _SpinProcess:
        port = free_loopback_port()
        # A kept build (a rollback) is served from its frozen wasm, not the latest build output.
        manifest = await asyncio.to_thread(manifest_for, built)
        argv = [self.spin.path, "up", "--from", str(manifest.path), "--listen", f"127.0.0.1:{port}"]
        if self.runtime_config is not None:
            argv += ["--runtime-config-file", str(self.runtime_config)]
        env = dict(self.env if self.env is not None else os.environ)
        env.pop("SPIN_HTTP_LISTEN_ADDR", None)  # --listen decides
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=Path(built.spec.manifest_path).parent,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own group: a stop reaches anything it started
            )
        except BaseException:
            manifest.cleanup()
            raise
        made = _SpinProcess(proc=proc, port=port, digest=built.digest, manifest=manifest)
        made.idle.set()
        for stream, pipe in ((LogStream.STDOUT, proc.stdout), (LogStream.STDERR, proc.stderr)):
            assert pipe is not None
            made.readers.append(asyncio.create_task(self._read_output(made, stream, pipe)))
        made.readers.append(asyncio.create_task(self._watch_exit(made)))
        return made

    async def _watch_exit(self, made: _SpinProcess) -> None:
        code = await made.proc.wait()
        if made is self._current and not made.stopping:
            self._log(
                LogStream.SYSTEM,
                f"Error: `spin up` serving {made.digest.split(':')[-1][:12]} exited with code {code}; "
                "requests get 502 until the next deploy (save a file to redeploy)",
            )

    async def _read_output(self, made: _SpinProcess, stream: LogStream, pipe: asyncio.StreamReader) -> None:
        while raw := await pipe.readline():
            text = raw.decode(errors="replace").rstrip("\r\n")
            made.output.append(text)
            if text.strip():
                self._log(stream, text)

    async def _wait_answering(self, made: _SpinProcess, built: BuiltApp) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self._closed:  # close() waits for this deploy: it stops waiting now
                raise self._closed_error()
            if made.proc.returncode is not None:
                await asyncio.gather(*made.readers, return_exceptions=True)
                raise self._start_failed(made, built, f"`spin up` exited with code {made.proc.returncode}")
            try:
                _reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", made.port), timeout=1.0
                )
            except (TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise self._start_failed(
                        made,
                        built,
                        f"`spin up` did not answer on 127.0.0.1:{made.port} within {self.start_timeout_s:.0f}s",
                    ) from None
                await asyncio.sleep(0.02)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    def _start_failed(self, made: _SpinProcess, built: BuiltApp, what: str) -> DeployError:
        errors = [line for line in made.output if line.startswith("Error:")]
        detail = errors[-1] if errors else next((x for x in reversed(made.output) if x.strip()), "")
        still = " (the previous version keeps serving)" if self._current is not None else ""
        return DeployError(
            what=f"app {self.app}: {what}{': ' + detail if detail else ''}{still}",
            where=f"spin up --from {built.spec.manifest_path}",
            fix="see the app's log for Spin's full output; fix the app or its spin.toml and save again",
        )

    async def _retire(self, old: _SpinProcess) -> None:
        # Requests already forwarded to the old process finish there; new ones go to the new one.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(old.idle.wait(), timeout=self.request_timeout_s)
        await self._stop(old)

    async def _stop(self, made: _SpinProcess) -> None:
        made.stopping = True
        if made.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(made.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(made.proc.wait(), timeout=self.stop_timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(made.proc.pid, signal.SIGKILL)
                await made.proc.wait()
        await asyncio.gather(*made.readers, return_exceptions=True)
        made.manifest.cleanup()

    def _log(self, stream: LogStream, text: str) -> None:
        level = "error" if text.startswith("Error:") else "info"
        self.on_log(LogLine(ts=time.time(), app=self.app, stream=stream, text=text, level=level))

    # --- the proxy -----------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        target = self._current
        if target is None or self._session is None:
            return web.Response(status=503, text=f"{self.app}: not deployed yet\n")
        started = time.perf_counter()
        request_id = f"s-{next(_request_ids):06x}"
        record = self.recording and self.on_exchange is not None and REPLAY_HEADER not in request.headers
        cap = self.record_body_bytes
        target.in_flight += 1
        target.idle.clear()
        body = b""
        status = 502
        response: web.StreamResponse | None = None
        kept = bytearray()  # the response body as recorded, up to the cap
        sent = 0
        whole = False  # every byte of Spin's body written (a client that then leaves got it all)
        answered: tuple[tuple[str, str], ...] = ()  # the response headers as Spin sent them
        try:
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            try:
                async with self._session.request(
                    request.method,
                    f"http://127.0.0.1:{target.port}{request.rel_url}",
                    headers=headers,
                    data=body or None,
                    allow_redirects=False,
                ) as upstream:
                    status = upstream.status
                    answered = tuple(upstream.headers.items())
                    # Streamed as it comes (server-sent events, large downloads), as clients
                    # would get it from Spin itself.
                    response = web.StreamResponse(
                        status=status,
                        headers={
                            k: v for k, v in answered if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
                        },
                    )
                    if upstream.content_length is not None:
                        response.content_length = upstream.content_length
                    await response.prepare(request)
                    async for chunk in upstream.content.iter_any():
                        sent += len(chunk)
                        if record and len(kept) < cap:
                            kept += chunk[: cap - len(kept)]
                        await response.write(chunk)
                    whole = True
                    await response.write_eof()
            except (TimeoutError, ClientError, ConnectionResetError) as exc:
                if response is None:  # nothing sent yet: say why
                    payload = f"{self.app}: spin did not answer ({exc!r})\n".encode()
                    response = web.Response(status=502, body=payload, content_type="text/plain")
                    kept, sent = bytearray(payload[:cap]), len(payload)
                    answered = tuple(response.headers.items())
                elif not whole:  # cut off mid-body: the client must not take it for a whole response
                    response.force_close()
                    status = 502
        finally:
            target.in_flight -= 1
            if target.in_flight == 0:
                target.idle.set()
        latency_ms = (time.perf_counter() - started) * 1000
        component = self._component_for(request.path)
        self.on_request(
            RequestRecord(
                ts=time.time(),
                app=self.app,
                component=component,
                method=request.method,
                path=request.path_qs,
                status=status,
                latency_ms=latency_ms,
                request_id=request_id,
            )
        )
        assert response is not None  # every way out of the try without one raised
        if record and self.on_exchange is not None:
            self.on_exchange(
                RecordedExchange(
                    ts=time.time(),
                    app=self.app,
                    request_id=request_id,
                    method=request.method,
                    path=request.raw_path.partition("?")[0],
                    query=request.rel_url.raw_query_string,
                    headers=tuple(request.headers.items()),
                    body=body[:cap],
                    status=response.status,
                    response_headers=answered,
                    response_body=bytes(kept),
                    latency_ms=latency_ms,
                    body_truncated=len(body) > cap,
                    response_truncated=sent > cap,
                    component=component,
                )
            )
        return response

    def _component_for(self, path: str) -> str:
        if self._built is None:
            return ""
        best, best_len = "", -1
        for trigger in self._built.spec.http_triggers:
            route = trigger.route
            if route.matches(path):
                weight = 1_000_000 if not route.wildcard else len(route.prefix)
                if weight > best_len:
                    best, best_len = trigger.component, weight
        return best


def closed_error(app: str) -> TargetUnavailable:
    """What a deploy under `spin up` raises when the local target closed meanwhile."""
    return TargetUnavailable(
        what=f"the local target was closed while app `{app}` was being deployed under `spin up`",
        where="local target",
        fix="nothing to fix if wasmdev is shutting down; otherwise deploy again",
    )
