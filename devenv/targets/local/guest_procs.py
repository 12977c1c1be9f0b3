"""Serving processes: the local target serves apps (WAGI and wasi:http) from a few processes,
not one GIL. Each process compiles or loads components from the shared on-disk compile cache.

wasmdev keeps what only it can do: compiling and checking each build (so a broken build fails
here, with its message, before any process sees it), binding each app's port, and the store.
Each process (guest_worker.py) gets every app's listening socket and every build, builds the
same version from the compile cache in milliseconds, and serves it with the same ``LocalServer``
as in-process mode; the kernel spreads connections over the processes. What they observe comes
back in batches and is reported as if it had been served here.

A deploy returns once every process has swapped the new version in, so the first request after
it gets the new build whichever process accepts it. A process that dies is started again with
every app's socket and current build; the connections it was serving are cut (reported as a
system line). A process that stops answering pings (stopped, deadlocked) is killed and
replaced the same way. If processes cannot start, or keep dying, ``broken`` says why, and the
target serves in-process instead (slower under load, never down) and the processes exit.

Everything here runs on the local server's event loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devenv.model import BuiltApp
from devenv.targets.local.executor import RequestLimits
from devenv.targets.local.guest_calls import RequestObserver
from devenv.targets.local.host_settings import HostApiSettings
from devenv.targets.local.messages import (
    Deploy,
    GuestOutput,
    Ping,
    ProcessOptions,
    Record,
    Remove,
    ServedRequest,
)
from devenv.targets.local.serving_process import (
    HUNG_AFTER_S,
    ProcessesUnavailable,
    ServingProcess,
    rotate_log,
)

START_TIMEOUT_S = 60.0  # importing wasmtime on a cold, busy machine can take seconds
REPLY_TIMEOUT_S = 60.0  # a deploy is a compile-cache hit; a remove waits out the grace period
STOP_GRACE_S = 5.0  # past the worker's own 2 s grace, before it is killed
MAX_RESTARTS = 5  # within RESTART_WINDOW_S restarts are immediate; past that they back off
RESTART_WINDOW_S = 60.0
MAX_RESTART_DELAY_S = 30.0
HEARTBEAT_S = 1.0  # each process is pinged this often (answered from its server loop)
class ProcessDeployFailed(Exception):
    """A serving process refused a build (its reason is the message); the previous one serves."""


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
        on_unserved: Callable[[dict[str, Deploy]], None],
        record_body_bytes: int = 1024 * 1024,
    ) -> None:
        self.count = count
        self.log_dir = log_dir
        self.options = ProcessOptions(
            cache_dir=str(cache_dir),
            config_key=config_key,
            host=host,
            threads=threads,
            timeout_s=limits.timeout_s,
            memory_bytes=limits.memory_bytes,
            index=-1,
            record_body_bytes=record_body_bytes,
        )
        self.recording = False
        self._pings = itertools.count(1)
        self._record_seq = 0
        self._heartbeat: asyncio.Task[None] | None = None
        self.broken: str | None = None  # why apps are served in-process instead
        self._observer = observer
        self._on_restart = on_restart
        self._on_unserved = on_unserved
        self._processes: list[ServingProcess] = []
        # app -> its listening socket and the Deploy every process serves it from (sent again to a
        # replacement process)
        self._apps: dict[str, tuple[socket.socket, Deploy]] = {}
        self._seq = itertools.count(1)
        self._indexes = itertools.count()
        self._restarts: list[float] = []
        self._stopping = False
        self._retired = False  # the apps went in-process for good: no process is replaced
        self._replacing: set[asyncio.Task[None]] = set()
        self._start_task: asyncio.Future[None] | None = None
        # Deploys, removes and a replacement catching up take turns: each sees whole app states.
        self._lock = asyncio.Lock()

    # --- lifecycle -----------------------------------------------------------------------------

    def launch(self) -> None:
        """Begin starting the processes (once, on the running loop) without waiting for them:
        they import wasmtime while the first build compiles, and ``deploy`` waits for them."""
        if self._start_task is None:
            self._start_task = asyncio.ensure_future(self._start_all())
            self._heartbeat = asyncio.ensure_future(self._beat())

    async def start(self) -> None:
        """Start the processes (once) and wait until they are up."""
        self.launch()
        assert self._start_task is not None
        await asyncio.shield(self._start_task)

    async def _beat(self) -> None:
        """Ping every process; kill one that has not answered for HUNG_AFTER_S (SIGSTOP, a
        deadlock): its connections hang otherwise, unnoticed. Also keeps the logs bounded."""
        while not self._stopping:
            await asyncio.sleep(HEARTBEAT_S)
            now = time.monotonic()
            seq = next(self._pings)
            for process in list(self._processes):
                if not process.alive or not process.ready.done():
                    continue
                if now - process.last_pong > HUNG_AFTER_S:
                    process.hung = True
                    process.kill()  # connection_lost follows: replaced as any exit is
                    continue
                process.send(Ping(seq))
                rotate_log(process.log_path, copy=True)

    def set_recording(self, on: bool) -> None:
        self.recording = on
        self._record_seq = next(self._pings)  # heartbeats after it are sent after the Record
        for process in self._processes:
            process.send(Record(on))

    @property
    def recording_applied(self) -> bool:
        """Every running process has handled the last ``set_recording`` (its later ping came back)."""
        return all(p.pong_seq > self._record_seq for p in self._processes if p.alive and p.ready.done())

    async def _start_all(self) -> None:
        for _ in range(self.count):
            if self._stopping:
                return
            try:
                await self._spawn()
            except OSError as err:
                self.broken = f"cannot start a serving process: {err.strerror or err}"
                return

    async def _spawn(self) -> ServingProcess:
        process = ServingProcess(next(self._indexes), self.log_dir, self.options, self.report, self.process_lost)
        await process.connect()
        self._processes.append(process)
        if self.recording:
            process.send(Record(True))
        return process

    def process_lost(self, process: ServingProcess, reason: str) -> None:
        if process in self._processes:
            self._processes.remove(process)
        if self._stopping or self._retired:
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
                self._on_unserved({app: deploy for app, (_, deploy) in self._apps.items()})
            self._retire_idle()
            return
        # With survivors serving, retry ever more slowly past a burst of exits.
        if self._apps:
            when = f"in {delay:g} s" if delay else "now"
            self._on_restart(f"a serving process exited ({reason}); starting another {when}")
        task = asyncio.get_running_loop().create_task(self._replace(delay))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

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
        if self.broken is not None:  # the apps went in-process meanwhile: nothing to serve
            self._retire_idle()
            return
        async with self._lock:  # no deploy or remove of an app while it catches up
            for app, (sock, deploy) in list(self._apps.items()):
                if not process.alive or self._stopping:
                    return
                error = await process.request("deploy", app, deploy.seq, deploy)
                if error:
                    self._on_restart(f"the new serving process could not deploy app `{app}`: {error}")
                    continue
                process.listen(app, sock)

    async def stop(self) -> None:
        """Stop every process: guests stuck in a loop are interrupted, requests in flight
        finish within the grace period, reports arrive; then the processes exit (or are killed)."""
        self._stopping = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for task in list(self._replacing):
            task.cancel()  # a replacement starting now would only be stopped again
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
        for sock, _ in self._apps.values():
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

    async def deploy(
        self, app: str, built: BuiltApp, sock: socket.socket, host_apis: HostApiSettings | None = None
    ) -> None:
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
                tail = next((t for t in (p.log_cause() for p in self._processes) if t), "")
                why = tail or str(err) or f"none was ready after {START_TIMEOUT_S:g} s"
                self.broken = f"serving processes did not start ({why})"
        if self.broken is not None or not self._processes:
            raise ProcessesUnavailable(self.broken or "no serving process is running")
        async with self._lock:
            seq = next(self._seq)
            deploy = Deploy(app, seq, built, host_apis)
            errors = await self._all("deploy", app, seq, deploy)
            old = self._apps.get(app)
            if errors:
                if old is not None:  # processes that took the new build go back to the old one
                    await self._all("deploy", app, old[1].seq, old[1])
                else:  # a first build: nothing to go back to, so processes that took it drop it
                    undo = next(self._seq)
                    await self._all("remove", app, undo, Remove(app, undo))
                raise ProcessDeployFailed(errors[0])
            # Kept here from now on: a replacement process gets the socket and this build too.
            own = old[0] if old is not None else sock.dup()
            self._apps[app] = (own, deploy)
            for process in self._processes:
                process.listen(app, own)

    async def remove(self, app: str) -> None:
        async with self._lock:
            entry = self._apps.pop(app, None)
            if entry is None:
                return
            seq = next(self._seq)
            await self._all("remove", app, seq, Remove(app, seq))
            for process in self._processes:
                process.listening.discard(app)
            entry[0].close()

    async def _all(self, kind: str, app: str, seq: int, message: Deploy | Remove) -> list[str]:
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

    def report(self, items: tuple[ServedRequest | GuestOutput, ...]) -> None:
        observer = self._observer
        for item in items:
            if isinstance(item, GuestOutput):
                observer.guest_output(item)
            else:
                observer.request_served(item)

    def _retire_idle(self) -> None:
        """The apps are served in-process now: processes still up (a replacement that started
        late, say) would only hold memory. They exit; the apps stay where they are."""
        self._retired = True
        for process in list(self._processes):
            process.close(interrupt=True)
            asyncio.get_running_loop().run_in_executor(None, _reap, process.proc)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
