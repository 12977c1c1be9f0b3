"""Serving processes: the local target serves WAGI apps from a few processes, not one GIL.

wasmdev keeps what only it can do: compiling and checking each build (so a broken build fails
here, with its message, before any process sees it), binding each app's port, and the store.
Each process (guest_worker.py) gets every app's listening socket and every build, builds the
same version from the compile cache in milliseconds, and serves it with the same ``LocalServer``
as in-process mode; the kernel spreads connections over the processes. What they observe comes
back in batches and is reported as if it had been served here.

A deploy returns once every process has swapped the new version in, so the first request after
it gets the new build whichever process accepts it. A process that dies is started again with
every app's socket and current build; the connections it was serving are cut (reported as a
system line). If processes cannot start, or keep dying, ``broken`` says why, and the target
serves in-process instead: slower under load, never down.

Everything here runs on the local server's event loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import devenv
from devenv.model import BuiltApp, LogStream
from devenv.targets.local.executor import ExecutionStats, RequestLimits
from devenv.targets.local.guest_worker import _HEADER, pack
from devenv.targets.local.server import RequestObserver, ServedRequest
from devenv.targets.local.wasm_kind import WasmKind, wasm_kind

START_TIMEOUT_S = 60.0  # importing wasmtime on a cold, busy machine can take seconds
REPLY_TIMEOUT_S = 60.0  # a deploy is a compile-cache hit; a remove waits out the grace period
STOP_GRACE_S = 5.0  # past the worker's own 2 s grace, before it is killed
MAX_RESTARTS = 5  # within RESTART_WINDOW_S restarts are immediate; past that they back off
RESTART_WINDOW_S = 60.0
MAX_RESTART_DELAY_S = 30.0


class ProcessesUnavailable(Exception):
    """The processes cannot serve (see ``GuestProcesses.broken``): serve in-process instead."""


class ProcessDeployFailed(Exception):
    """A serving process refused a build (its reason is the message); the previous one serves."""


class _Channel(asyncio.Protocol):
    def __init__(self, owner: _Process) -> None:
        self._owner = owner
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, offset)
            end = offset + _HEADER.size + size
            if len(buffer) < end:
                break
            message = pickle.loads(memoryview(buffer)[offset + _HEADER.size : end])
            offset = end
            self._owner.received(message)
        if offset:
            del buffer[:offset]

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.lost()


class _Process:
    def __init__(self, pool: GuestProcesses, index: int) -> None:
        self.pool = pool
        self.index = index
        self.log_path = pool.log_dir / f"guest-process-{index}.log"
        self.replies: dict[tuple[str, str, int], asyncio.Future[str]] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # every report read
        self.transport: asyncio.Transport | None = None
        self.listening: set[str] = set()
        self._lost = False
        self._eof = False  # we half-closed: nothing more may be sent
        control, control_child = socket.socketpair()
        self.fds, fds_child = socket.socketpair()
        env = dict(os.environ)
        # The process imports this very package, wherever it came from (a checkout, a wheel).
        package_root = str(Path(devenv.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        with contextlib.ExitStack() as on_error:
            on_error.callback(control.close)
            on_error.callback(self.fds.close)
            with control_child, fds_child, open(self.log_path, "ab") as log:
                self.proc = self._popen(control_child, fds_child, log, env)
            on_error.pop_all()
        self.control = control

    def _popen(
        self, control_child: socket.socket, fds_child: socket.socket, log: Any, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        pool = self.pool
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devenv.targets.local.guest_worker",
                str(control_child.fileno()),
                str(fds_child.fileno()),
                pickle.dumps({**pool.options, "index": self.index}).hex(),
            ],
            pass_fds=(control_child.fileno(), fds_child.fileno()),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal reaches wasmdev, which stops these
        )

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_unix_connection(lambda: _Channel(self), sock=self.control)

    @property
    def alive(self) -> bool:
        return not self._lost

    def send(self, message: tuple[Any, ...]) -> None:
        if self.transport is not None and not self.transport.is_closing() and not self._eof:
            self.transport.write(pack(message))

    def request(self, kind: str, app: str, seq: int, message: tuple[Any, ...]) -> asyncio.Future[str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if self._lost:
            future.set_result("the process had exited")
        else:
            self.replies[(kind, app, seq)] = future
            self.send(message)
        return future

    def listen(self, app: str, sock: socket.socket) -> None:
        """Hand the process ``app``'s listening socket; it serves it from then on."""
        if app in self.listening or self._lost or self._eof:
            return
        # The descriptor first, on its own socket: the "listen" frame that follows consumes it.
        try:
            socket.send_fds(self.fds, [b"L"], [sock.fileno()])
        except OSError:
            return  # the process is exiting: connection_lost restarts it
        self.send(("listen", app))
        self.listening.add(app)

    def received(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "report":
            self.pool.report(message[1])
        elif kind == "done":
            _, what, app, seq, error = message
            future = self.replies.pop((what, app, seq), None)
            if future is not None and not future.done():
                future.set_result(error)
        elif kind == "ready" and not self.ready.done():
            self.ready.set_result(None)

    def lost(self) -> None:
        if self._lost:
            return
        self._lost = True
        reason = self.exit_reason()
        for future in self.replies.values():
            if not future.done():
                future.set_result(f"the process exited ({reason})")
        self.replies.clear()
        if not self.ready.done():
            self.ready.set_exception(ProcessesUnavailable(reason))
        self.fds.close()
        if not self.closed.done():
            self.closed.set_result(None)
        self.pool.process_lost(self, reason)

    def exit_reason(self) -> str:
        code = self.proc.poll()
        if code is None:
            try:
                code = self.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # alive but deaf: a replacement takes over, this one must go
                asyncio.get_running_loop().run_in_executor(None, self.proc.wait)
                return "its connection to wasmdev closed"
        what = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        tail = self.log_tail()
        return f"{what}: {tail}" if tail else what

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def close(self, interrupt: bool) -> None:
        """Half-close: at end of file the process lets its requests finish, reports, and exits."""
        if interrupt:
            self.send(("interrupt",))
        if self.transport is not None and not self.transport.is_closing() and not self._eof:
            self.transport.write_eof()
        self._eof = True


class GuestProcesses:
    """``count`` serving processes of ``threads`` guest threads each."""

    def __init__(
        self,
        count: int,
        threads: int,
        *,
        cache_dir: Path,
        config_key: str,
        host: str,
        limits: RequestLimits,
        log_dir: Path,
        observer: RequestObserver,
        on_restart: Callable[[str], None],
        on_unserved: Callable[[dict[str, BuiltApp]], None],
    ) -> None:
        self.count = count
        self.log_dir = log_dir
        self.options = {
            "cache_dir": str(cache_dir),
            "config_key": config_key,
            "host": host,
            "threads": threads,
            "timeout_s": limits.timeout_s,
            "memory_bytes": limits.memory_bytes,
        }
        self.broken: str | None = None  # why apps are served in-process instead
        self._observer = observer
        self._on_restart = on_restart
        self._on_unserved = on_unserved
        self._processes: list[_Process] = []
        self._apps: dict[str, tuple[socket.socket, BuiltApp, int]] = {}  # app -> socket, build, seq
        self._seq = itertools.count(1)
        self._indexes = itertools.count()
        self._restarts: list[float] = []
        self._stopping = False
        self._start_task: asyncio.Future[None] | None = None
        # Deploys, removes and a replacement catching up take turns: each sees whole app states.
        self._lock = asyncio.Lock()

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the processes (once); they import wasmtime meanwhile, and ``deploy`` waits."""
        if self._start_task is None:
            self._start_task = asyncio.ensure_future(self._start_all())
        await asyncio.shield(self._start_task)

    async def _start_all(self) -> None:
        for _ in range(self.count):
            if self._stopping:
                return
            try:
                await self._spawn()
            except OSError as err:
                self.broken = f"cannot start a serving process: {err.strerror or err}"
                return

    async def _spawn(self) -> _Process:
        process = _Process(self, next(self._indexes))
        await process.connect()
        self._processes.append(process)
        return process

    def process_lost(self, process: _Process, reason: str) -> None:
        if process in self._processes:
            self._processes.remove(process)
        if self._stopping:
            return
        started = process.ready.exception() is None
        if not started:  # deploys serve in-process from now on
            self.broken = f"serving processes did not start ({reason})"
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S] + [now]
        excess = len(self._restarts) - MAX_RESTARTS
        delay = min(MAX_RESTART_DELAY_S, 2.0**excess) if excess > 0 else 0.0
        if not any(p.alive for p in self._processes) and (not started or delay):
            # Nobody left to serve, and a replacement cannot start or would only crash again:
            # give the apps to wasmdev's own server now rather than leave their ports unanswered.
            self.broken = self.broken or f"serving processes keep exiting ({reason})"
            if self._apps:
                self._on_unserved({app: built for app, (_, built, _) in self._apps.items()})
            return
        # With survivors serving, retry ever more slowly past a burst of exits.
        if self._apps:
            when = f"in {delay:g} s" if delay else "now"
            self._on_restart(f"a serving process exited ({reason}); starting another {when}")
        asyncio.get_running_loop().create_task(self._replace(delay))

    async def _replace(self, delay: float) -> None:
        """A new process serving what the others serve: each app's current build, then its socket."""
        if delay:
            await asyncio.sleep(delay)
        if self._stopping:
            return
        try:
            process = await self._spawn()
            await asyncio.wait_for(asyncio.shield(process.ready), timeout=START_TIMEOUT_S)
        except (TimeoutError, OSError, ProcessesUnavailable):
            return  # process_lost tries again, later
        async with self._lock:  # no deploy or remove of an app while it catches up
            for app, (sock, built, seq) in list(self._apps.items()):
                if not process.alive or self._stopping:
                    return
                error = await process.request("deploy", app, seq, ("deploy", app, seq, built))
                if error:
                    self._on_restart(f"the new serving process could not deploy app `{app}`: {error}")
                    continue
                process.listen(app, sock)

    async def stop(self) -> None:
        """Stop every process: guests stuck in a loop are interrupted, requests in flight
        finish within the grace period, reports arrive; then the processes exit (or are killed)."""
        self._stopping = True
        if self._start_task is not None:
            with contextlib.suppress(Exception):
                await self._start_task  # spawning only: a process started meanwhile stops too
        processes, self._processes = self._processes, []
        for process in processes:
            process.close(interrupt=True)
        await asyncio.gather(*(asyncio.to_thread(_reap, p.proc) for p in processes))
        # Their last reports (a guest interrupted just now, say) are read before the sockets close.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.closed for p in processes)), timeout=STOP_GRACE_S)
        for process in processes:
            if process.transport is not None:
                process.transport.close()
        for sock, _, _ in self._apps.values():
            sock.close()
        self._apps.clear()

    # --- apps -----------------------------------------------------------------------------------

    def serves(self, app: str) -> bool:
        return app in self._apps

    def forget(self, app: str) -> None:
        """``app`` is served elsewhere now (no process left to tell)."""
        entry = self._apps.pop(app, None)
        if entry is not None:
            entry[0].close()

    async def deploy(self, app: str, built: BuiltApp, sock: socket.socket) -> None:
        """Swap ``built`` in on every process, then make sure each serves ``app``'s listening
        socket (the processes keep a duplicate of it until ``remove``). ``built`` must not change
        on disk afterwards: a replacement process builds it again. Raises ProcessesUnavailable
        (serve in-process instead) or ProcessDeployFailed (the previous build keeps serving)."""
        await self.start()
        if self.broken is None:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(asyncio.shield(p.ready) for p in self._processes)), timeout=START_TIMEOUT_S
                )
            except (TimeoutError, ProcessesUnavailable) as err:
                tail = next((t for t in (p.log_tail() for p in self._processes) if t), "")
                why = tail or str(err) or f"none was ready after {START_TIMEOUT_S:g} s"
                self.broken = f"serving processes did not start ({why})"
        if self.broken is not None or not self._processes:
            raise ProcessesUnavailable(self.broken or "no serving process is running")
        async with self._lock:
            seq = next(self._seq)
            errors = await self._all("deploy", app, seq, ("deploy", app, seq, built))
            old = self._apps.get(app)
            if errors:
                if old is not None:  # processes that took the new build go back to the old one
                    _, old_built, old_seq = old
                    await self._all("deploy", app, old_seq, ("deploy", app, old_seq, old_built))
                raise ProcessDeployFailed(errors[0])
            # Kept here from now on: a replacement process gets the socket and this build too.
            own = old[0] if old is not None else sock.dup()
            self._apps[app] = (own, built, seq)
            for process in self._processes:
                process.listen(app, own)

    async def remove(self, app: str) -> None:
        async with self._lock:
            entry = self._apps.pop(app, None)
            if entry is None:
                return
            seq = next(self._seq)
            await self._all("remove", app, seq, ("remove", app, seq))
            for process in self._processes:
                process.listening.discard(app)
            entry[0].close()

    async def _all(self, kind: str, app: str, seq: int, message: tuple[Any, ...]) -> list[str]:
        replies = [p.request(kind, app, seq, message) for p in self._processes if p.alive]
        try:
            results = await asyncio.wait_for(asyncio.gather(*replies), timeout=REPLY_TIMEOUT_S)
        except TimeoutError:
            return [f"a serving process did not answer a {kind} within {REPLY_TIMEOUT_S:g}s"]
        return [r for r in results if r]

    @property
    def pids(self) -> list[int]:
        return [p.proc.pid for p in self._processes if p.alive]

    # --- reports --------------------------------------------------------------------------------

    def report(self, items: list[tuple[Any, ...]]) -> None:
        observer = self._observer
        for item in items:
            if item[0] == "served":
                _, ts, app, component, method, path, status, latency_ms, request_id, cpu, memory, failure = item
                stats = ExecutionStats(cpu, memory)
                served = ServedRequest(app, component, method, path, status, latency_ms, request_id, stats, failure)
                observer.request_served(served, ts=ts)
            else:
                _, ts, app, component, request_id, stream, text = item
                observer.guest_output(app, component, request_id, LogStream(stream), text, ts=ts)


def freeze_wasm(built: BuiltApp, directory: Path) -> BuiltApp:
    """``built`` with each core module's wasm copied into ``directory``: what was checked is what
    every process (and any replacement, later) builds, whatever the next build writes.

    Only core modules: an app with a wasi:http component is served in-process, from code
    compiled once, so copying its (often ~18 MB) component would only cost a copy and, at a new
    path, a rehash in the compile cache on every deploy."""
    directory.mkdir(parents=True, exist_ok=True)
    frozen: dict[str, Path] = {}
    for component_id, component in built.spec.components.items():
        source = built.wasm.get(component_id) or component.source
        if source is None:
            continue  # not a local file: build_version says so
        copy = directory / f"{component_id}.wasm"
        try:
            with open(source, "rb") as f:
                if wasm_kind(f.read(8)) is not WasmKind.MODULE:
                    continue
            shutil.copyfile(source, copy)
        except OSError:
            continue  # build_version reports the unreadable file, with its path
        frozen[component_id] = copy
    return dataclasses.replace(built, wasm=MappingProxyType({**built.wasm, **frozen}))


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
