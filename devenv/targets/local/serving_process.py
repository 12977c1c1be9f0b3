"""One serving process, seen from wasmdev's side: starting it, its typed control channel, its
log (bounded, and read for the cause when it exits), and why it ended.

guest_procs.py keeps the pool of these; guest_worker.py is the other end. Everything here runs on
the local server's event loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import devenv
from devenv.targets.local.messages import (
    HEADER,
    Deploy,
    Done,
    FromProcess,
    GuestOutput,
    Interrupt,
    Listen,
    Pong,
    ProcessOptions,
    Ready,
    Remove,
    Report,
    SchemaMismatch,
    ServedRequest,
    ToProcess,
    pack,
    unpack,
)

HUNG_AFTER_S = 10.0  # no answer for this long: the process is hung (stopped, deadlocked), replaced
EXIT_GRACE_S = 1.0  # its connection closed: this long to exit on its own before it is killed
LOG_MAX_BYTES = 1024 * 1024  # a process's log past this is rotated to .1 (one old file kept)
# Lines of a traceback that say nothing on their own: carets, tildes, and "|" continuations.
_NOISE = re.compile(r"^[\s^~|]*$")
_CAUSE = re.compile(r"^(wasmdev: |[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b)")



class ProcessesUnavailable(Exception):
    """The processes cannot serve (see ``GuestProcesses.broken``): serve in-process instead."""



class _Channel(asyncio.Protocol):
    def __init__(self, owner: ServingProcess) -> None:
        self._owner = owner
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer, offset)
            end = offset + HEADER.size + size
            if len(buffer) < end:
                break
            try:
                message = unpack(memoryview(buffer)[offset + HEADER.size : end])
            except (SchemaMismatch, pickle.UnpicklingError) as err:
                self._owner.refuse(str(err))
                return
            offset = end
            self._owner.received(message)
        if offset:
            del buffer[:offset]

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.lost()


class ServingProcess:
    """One serving process, seen from wasmdev: its control channel, its log and its exit.

    ``on_report`` gets what it observed; ``on_lost(process, reason)`` runs once it is gone."""

    def __init__(
        self,
        index: int,
        log_dir: Path,
        options: ProcessOptions,
        on_report: Callable[[tuple[ServedRequest | GuestOutput, ...]], None],
        on_lost: Callable[[ServingProcess, str], None],
    ) -> None:
        self.index = index
        self.options = options
        self.on_report = on_report
        self.on_lost = on_lost
        self.log_path = log_dir / f"guest-process-{index}.log"
        self.files_dir = log_dir / f"files-{index}"  # removed here even if the process is killed
        rotate_log(self.log_path)
        try:
            self.log_start = self.log_path.stat().st_size  # this process's lines start here
        except OSError:
            self.log_start = 0
        self.last_pong = time.monotonic()
        self.pong_seq = 0  # the latest Ping answered: every message sent before it was handled
        self.hung = False
        self.replies: dict[tuple[str, str, int], asyncio.Future[str]] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # every report read
        self.transport: asyncio.Transport | None = None
        self.listening: set[str] = set()
        self._lost = False
        self._reaping: asyncio.Task[None] | None = None  # waiting for an exit, off the loop
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
        self, control_child: socket.socket, fds_child: socket.socket, log: IO[bytes], env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        options = dataclasses.replace(self.options, index=self.index, files_dir=str(self.files_dir))
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devenv.targets.local.guest_worker",
                str(control_child.fileno()),
                str(fds_child.fileno()),
                pickle.dumps(options).hex(),
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

    def send(self, message: ToProcess) -> None:
        if self.transport is not None and not self.transport.is_closing() and not self._eof:
            self.transport.write(pack(message))

    def request(self, kind: str, app: str, seq: int, message: Deploy | Remove) -> asyncio.Future[str]:
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
        self.send(Listen(app))
        self.listening.add(app)

    def received(self, message: FromProcess) -> None:
        match message:
            case Report(items=items):
                self.on_report(items)
            case Pong(seq=seq):
                self.last_pong = time.monotonic()
                self.pong_seq = max(self.pong_seq, seq)
            case Done(kind=kind, app=app, seq=seq, error=error):
                future = self.replies.pop((kind, app, seq), None)
                if future is not None and not future.done():
                    future.set_result(error)
            case Ready():
                self.last_pong = time.monotonic()
                if not self.ready.done():
                    self.ready.set_result(None)

    def refuse(self, why: str) -> None:
        """The process speaks another schema (another wasmdev checkout): it cannot serve."""
        self.hung = False
        if not self.ready.done():
            self.ready.set_exception(ProcessesUnavailable(f"serving process refused: {why}"))
        self.kill()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)

    def lost(self) -> None:
        """Its connection closed (on the server loop, which also serves every in-process
        request: nothing here may block). The exit is reported once the process is reaped."""
        if self._lost:
            return
        self._lost = True
        self.fds.close()
        code = self.proc.poll()
        if code is not None:
            self._report_lost(self.exit_reason(code))
            return
        # Not reaped yet: it is still exiting, alive but deaf, or another thread is reaping it
        # (stop() does), which makes poll() answer None. Waited for in a thread.
        self._reaping = asyncio.get_running_loop().create_task(self._reap_then_report())

    async def _reap_then_report(self) -> None:
        code = await asyncio.to_thread(self._wait_or_kill)
        self._report_lost(self.exit_reason(code))

    def _wait_or_kill(self) -> int | None:
        """Blocking: the exit status, or None for a process that was alive but deaf and is killed
        (a replacement takes over; this one must go)."""
        try:
            return self.proc.wait(timeout=EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def _report_lost(self, reason: str) -> None:
        for future in self.replies.values():
            if not future.done():
                future.set_result(f"the process exited ({reason})")
        self.replies.clear()
        if not self.ready.done():
            self.ready.set_exception(ProcessesUnavailable(reason))
        shutil.rmtree(self.files_dir, ignore_errors=True)  # staged by a process that cannot now
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_lost(self, reason)

    def exit_reason(self, code: int | None) -> str:
        """Why the process ended, from its exit status (None: it was killed for going deaf)."""
        if code is None:
            return "its connection to wasmdev closed"
        if self.hung:
            return f"it stopped answering for {HUNG_AFTER_S:g} s (hung) and was killed"
        if code < 0:
            # Killed from outside (the OOM killer, a kill -9): its log says nothing about why.
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"killed by {name}"
        cause = self.log_cause()
        return f"exit status {code}: {cause}" if cause else f"exit status {code}"

    def log_cause(self) -> str:
        """The line of this process's log that says why it ended: the last exception or
        wasmdev line it wrote, never a caret or "|" line of a traceback; "" if none."""
        try:
            with open(self.log_path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(self.log_start if self.log_start <= size else 0)  # rotated meanwhile
                text = f.read(256 * 1024).decode(errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines() if not _NOISE.match(line)]
        causes = [line for line in lines if _CAUSE.match(line)]
        return (causes or [""])[-1][:300]

    def close(self, interrupt: bool) -> None:
        """Half-close: at end of file the process lets its requests finish, reports, and exits."""
        if interrupt:
            self.send(Interrupt())
        if self.transport is not None and not self.transport.is_closing() and not self._eof:
            self.transport.write_eof()
        self._eof = True


def rotate_log(path: Path, copy: bool = False) -> None:
    """Keep a process's log under LOG_MAX_BYTES: move it to ``.1`` (one old file kept). A
    running process appends (O_APPEND), so ``copy`` then truncate is safe under it."""
    try:
        if path.stat().st_size <= LOG_MAX_BYTES:
            return
        old = path.with_suffix(path.suffix + ".1")
        if copy:
            shutil.copyfile(path, old)
            os.truncate(path, 0)
        else:
            os.replace(path, old)
    except OSError:
        pass


