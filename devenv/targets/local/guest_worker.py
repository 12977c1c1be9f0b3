"""A serving process: the local target's HTTP server and guests (WAGI modules and wasi:http
components, loaded from the shared compile cache), outside wasmdev's GIL.

In one process, every request's Python work (aiohttp on the server loop, then WASI set-up, CGI
parsing and reporting on a guest thread) shares one GIL, which capped the WAGI hello near 1,500
req/s on a 2-core machine however many guest threads ran. So on a machine with cores to spare,
wasmdev starts a few of these (guest_procs.py). Each runs the very ``LocalServer`` the
in-process mode runs, on the app's listening socket, which it received from wasmdev: the kernel
hands each new connection to whichever process accepts it first. Leases, staged files and hot
swaps are each process's own business, exactly as in-process.

wasmdev's end, ``python -m devenv.targets.local.guest_worker`` with two sockets: a control socket
carrying typed frames (messages.py), and a second one that carries only the listening sockets'
descriptors (SCM_RIGHTS), each sent just before the ``Listen`` that uses it. End of file on the
control socket means "exit": the process closes its ports, lets requests in flight finish
(bounded by the grace period and the request deadline), reports, and exits.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from devenv.targets.local.messages import (
    HEADER,
    Deploy,
    Done,
    FromProcess,
    GuestOutput,
    Interrupt,
    Listen,
    Ping,
    Pong,
    ProcessOptions,
    Ready,
    Record,
    Remove,
    Report,
    ServedRequest,
    ToProcess,
    pack,
    unpack,
)

REPORT_EVERY_S = 0.005  # reports wait this long to travel together: one write per batch under load


class _Reports:
    """What the server observed, sent to wasmdev in batches by one thread."""

    def __init__(self, send: Callable[[FromProcess], None]) -> None:
        self._send = send
        self._items: list[ServedRequest | GuestOutput] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="wasmdev-reports", daemon=True)
        self._thread.start()

    # RequestObserver, called on the server's threads
    def request_served(self, served: ServedRequest) -> None:
        self._add(served)

    def guest_output(self, output: GuestOutput) -> None:
        self._add(output)

    def _add(self, item: ServedRequest | GuestOutput) -> None:
        with self._lock:
            self._items.append(item)
            first = len(self._items) == 1
        if first:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if not self._closing:
                time.sleep(REPORT_EVERY_S)  # let the rest of the batch arrive
            with self._lock:
                items, self._items = self._items, []
            if items:
                try:
                    self._send(Report(tuple(items)))
                except OSError:
                    return  # wasmdev is gone
            if self._closing:
                return

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=5)


class _Worker:
    def __init__(self, control: socket.socket, fds: socket.socket, options: ProcessOptions) -> None:
        # Imported here: importing this module must not import wasmtime (wasmdev's side reads
        # the process's log and options without it).
        from devenv.targets.local.compile_cache import CompileCache
        from devenv.targets.local.deploy import VersionStager
        from devenv.targets.local.executor import RequestLimits
        from devenv.targets.local.runtime import WasmRuntime
        from devenv.targets.local.server import LocalServer

        self.control = control
        self.fds = fds
        self._send_lock = threading.Lock()
        self.runtime = WasmRuntime()
        if self.runtime.config_key != options.config_key:
            raise RuntimeError(
                f"this process's wasmtime engine ({self.runtime.config_key}) differs from "
                f"wasmdev's ({options.config_key})"
            )
        cache = CompileCache(Path(options.cache_dir), options.config_key)
        limits = RequestLimits(timeout_s=options.timeout_s, memory_bytes=options.memory_bytes)
        self.staging_root = Path(options.files_dir)
        self.staging_root.mkdir(parents=True, exist_ok=True)
        self.stager = VersionStager(self.runtime, cache, limits, self.staging_root)
        self.reports = _Reports(self.send)
        self.server = LocalServer(
            options.host,
            self.reports,
            workers=options.threads,
            request_id_prefix=f"{options.index}-",
            shared_accept=True,
            record_body_bytes=options.record_body_bytes,
        )
        self.server.start()

    def send(self, message: FromProcess) -> None:
        frame = pack(message)
        with self._send_lock:
            self.control.sendall(frame)

    def serve(self) -> None:
        stream = self.control.makefile("rb", buffering=64 * 1024)
        try:
            while True:
                header = stream.read(HEADER.size)
                if len(header) < HEADER.size:
                    break  # wasmdev closed its end: finish and exit
                size = HEADER.unpack(header)[0]
                body = stream.read(size)
                if len(body) < size:
                    break
                message = unpack(body)
                assert not isinstance(message, (Ready, Done, Pong, Report)), message
                self.handle(message)
        finally:
            self.stop()

    def handle(self, message: ToProcess) -> None:
        server = self.server
        match message:
            case Deploy(app=app, seq=seq, built=built, host_apis=host_apis):
                error = self.stager.deploy(server, app, built, label=f"{app}-{seq}", host_apis=host_apis)
                self.send(Done("deploy", app, seq, error))
            case Listen(app=app):
                _, fds, _, _ = socket.recv_fds(self.fds, 1, 1)  # one byte: one descriptor
                sock = socket.socket(fileno=fds[0])
                server.call(server.listen(app, 0, sock=sock))
            case Remove(app=app, seq=seq):
                server.call(server.remove(app))
                self.send(Done("remove", app, seq))
            case Interrupt():
                self.runtime.interrupt_all()
            case Record(on=on):
                server.recording = on
            case Ping(seq=seq):
                # Answered from the server loop: a process whose loop is stuck is hung too.
                server.loop.call_soon_threadsafe(self._pong, seq)

    def _pong(self, seq: int) -> None:
        try:
            self.send(Pong(seq))
        except OSError:
            pass  # wasmdev is gone; reading the control socket ends this process

    def stop(self) -> None:
        try:
            self.server.stop(interrupt_guests=self.runtime.interrupt_all)
        finally:
            self.reports.close()
            self.runtime.close()
            shutil.rmtree(self.staging_root, ignore_errors=True)


def main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(argv[0]))
    fds = socket.socket(fileno=int(argv[1]))
    options = pickle.loads(bytes.fromhex(argv[2]))
    try:
        worker = _Worker(control, fds, options)
    except Exception as err:
        traceback.print_exc()  # to this process's log file
        # The line wasmdev quotes when this process exits: its last line, the cause.
        print(f"wasmdev: serving process could not start: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    worker.send(Ready(os.getpid()))
    worker.serve()
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown racing wasmtime's own (see LocalTarget.close)
