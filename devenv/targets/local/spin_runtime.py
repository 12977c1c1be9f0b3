"""Serve one app under an installed ``spin up``, behind a proxy on the app's own port.

wasmdev keeps the app's port itself and forwards each request to the current ``spin up``
process, which listens on a private loopback port. That keeps what the embedded runtime gives:
a request record with latency for every request, and a deploy that swaps versions without a
gap: the new process is started on a new private port and must answer before the proxy points
at it; only then is the old one stopped (after its requests in flight finish). A new process that
exits or never answers is stopped and the deploy fails with its output, while the old one keeps
serving. Spin's stdout and stderr (its own messages and the guests' output) become log lines.

Self-contained on purpose: it needs a ``BuiltApp`` (its manifest and routes), a port and two
callbacks, so the local target's serving backend can hold one per app that needs Spin:
``spin_cli.choose_runtime`` decides per build (before any compile); for ``RuntimeChoice.SPIN`` the
backend makes one ``SpinServer`` per app (``start()`` once: it binds the app's port, so the
embedded server must not), then ``deploy(built)`` on every build and ``close()`` on removal.
``on_log`` and ``on_request`` are called on the event loop's thread, with the model's
``LogLine`` and ``RequestRecord`` (dispatch them as ``LogEmitted`` / ``RequestServed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from devenv.errors import DeployError
from devenv.model import BuiltApp, LogLine, LogStream, RequestRecord
from devenv.targets.local.spin_cli import SpinCli

# Hop-by-hop headers (RFC 9110 §7.6.1) are the proxy's own business on each leg.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
_OUTPUT_KEPT = 40  # lines of a process's output kept for a failed start's message


@dataclass
class _SpinProcess:
    proc: asyncio.subprocess.Process
    port: int
    digest: str
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
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 5.0,
        request_timeout_s: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.spin = spin
        self.app = app
        self.host = host
        self.port = port
        self.on_log = on_log
        self.on_request = on_request
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.request_timeout_s = request_timeout_s
        self.env = env
        self._current: _SpinProcess | None = None
        self._built: BuiltApp | None = None
        self._runner: web.ServerRunner | None = None
        self._session: ClientSession | None = None
        self._deploy_lock = asyncio.Lock()

    @property
    def serving_digest(self) -> str | None:
        return self._current.digest if self._current else None

    async def start(self) -> None:
        """Listen on the app's port (503 until the first deploy answers)."""
        self._session = ClientSession(
            timeout=ClientTimeout(total=self.request_timeout_s), auto_decompress=False
        )
        server = web.Server(self._handle)
        runner = web.ServerRunner(server, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as err:
            await runner.cleanup()
            await self._session.close()
            self._session = None
            raise DeployError(
                what=f"app {self.app}: cannot listen on {self.host}:{self.port}: {err.strerror or err}",
                where=f"the app's port ([apps.{self.app}].port or [local].base_port)",
                fix="stop what uses that port, or give the app another port in wasmdev.toml",
            ) from err
        if self.port == 0:  # an ephemeral port: say which one was given
            self.port = runner.addresses[0][1]
        self._runner = runner

    async def deploy(self, built: BuiltApp) -> None:
        """Start ``spin up`` for this build and switch to it once it answers; raises DeployError
        (the previous process keeps serving) if it exits or does not answer in time."""
        async with self._deploy_lock:
            new = await self._spawn(built)
            try:
                await self._wait_answering(new, built)
            except BaseException:
                await self._stop(new)
                raise
            old, self._current, self._built = self._current, new, built
            self._log(LogStream.SYSTEM, f"serving {built.short_digest} under spin {self.spin.version}")
            if old is not None:
                await self._retire(old)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._current is not None:
            await self._stop(self._current)
            self._current = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- processes -----------------------------------------------------------------------------

    async def _spawn(self, built: BuiltApp) -> _SpinProcess:
        port = free_loopback_port()
        manifest = Path(built.spec.manifest_path)
        argv = [self.spin.path, "up", "--from", str(manifest), "--listen", f"127.0.0.1:{port}"]
        env = dict(self.env if self.env is not None else os.environ)
        env.pop("SPIN_HTTP_LISTEN_ADDR", None)  # --listen decides
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=manifest.parent,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own group: a stop reaches anything it started
        )
        made = _SpinProcess(proc=proc, port=port, digest=built.digest)
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

    def _log(self, stream: LogStream, text: str) -> None:
        level = "error" if text.startswith("Error:") else "info"
        self.on_log(LogLine(ts=time.time(), app=self.app, stream=stream, text=text, level=level))

    # --- the proxy -----------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        target = self._current
        if target is None or self._session is None:
            return web.Response(status=503, text=f"{self.app}: not deployed yet\n")
        started = time.perf_counter()
        target.in_flight += 1
        target.idle.clear()
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
                    payload = await upstream.read()
                    out_headers = {
                        k: v
                        for k, v in upstream.headers.items()
                        if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
                    }
                    response = web.Response(status=upstream.status, headers=out_headers, body=payload)
            except (TimeoutError, ClientError) as exc:
                response = web.Response(status=502, text=f"{self.app}: spin did not answer ({exc!r})\n")
        finally:
            target.in_flight -= 1
            if target.in_flight == 0:
                target.idle.set()
        self.on_request(
            RequestRecord(
                ts=time.time(),
                app=self.app,
                component=self._component_for(request.path),
                method=request.method,
                path=request.path_qs,
                status=response.status,
                latency_ms=(time.perf_counter() - started) * 1000,
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
