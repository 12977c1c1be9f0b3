"""A serving process: the local target's HTTP server and WAGI guests, outside wasmdev's GIL.

In one process, every request's Python work (aiohttp on the server loop, then WASI set-up, CGI
parsing and reporting on a guest thread) shares one GIL, which capped the WAGI hello near 1,500
req/s on a 2-core machine however many guest threads ran. So on a machine with cores to spare,
wasmdev starts a few of these (guest_procs.py). Each runs the very ``LocalServer`` the
in-process mode runs, on the app's listening socket, which it received from wasmdev: the kernel
hands each new connection to whichever process accepts it first. Leases, staged files and hot
swaps are each process's own business, exactly as in-process.

wasmdev's end, ``python -m devenv.targets.local.guest_worker`` with two sockets: a control socket
carrying frames (a 4-byte little-endian length, then a pickled tuple; both ends are wasmdev's own
code run by the same user, as with ``multiprocessing``), and a second one that carries only the
listening sockets' descriptors (SCM_RIGHTS), each sent just before the "listen" that uses it.

wasmdev to this process, handled in order:
    ("deploy", app, seq, built)     build (a compile-cache hit: the server compiled it) and swap in
    ("listen", app)                 serve ``app`` on the next descriptor of the descriptor socket
    ("remove", app, seq)            close the app's port (requests in flight get the grace period)
    ("interrupt",)                  guests running now hit their deadline (wasmdev is stopping)
This process to wasmdev:
    ("ready",)                      once wasmtime and the server are up
    ("done", kind, app, seq, error) for a deploy or remove; error "" on success
    ("report", items)               requests served and guest output, batched (see ``_Reports``)
End of file on the control socket means "exit": the process closes its ports, lets requests in
flight finish (bounded by the grace period and the request deadline), reports, and exits.
"""

from __future__ import annotations

import copyreg
import io
import itertools
import os
import pickle
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from types import MappingProxyType
from typing import Any

_HEADER = struct.Struct("<I")
REPORT_EVERY_S = 0.005  # reports wait this long to travel together: one write per batch under load


def read_only(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(items)


def _mapping_proxy(proxy: MappingProxyType[Any, Any]) -> tuple[Any, ...]:
    return (read_only, (dict(proxy),))


# The model's frozen mappings are read-only views, which pickle refuses; these frames rebuild them.
_DISPATCH = {**copyreg.dispatch_table, MappingProxyType: _mapping_proxy}


def pack(message: tuple[Any, ...]) -> bytes:
    out = io.BytesIO()
    out.write(b"\0" * _HEADER.size)
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(message)
    _HEADER.pack_into(out.getbuffer(), 0, out.tell() - _HEADER.size)
    return out.getvalue()


class _Reports:
    """What the server observed, sent to wasmdev in batches by one thread.

    Items are plain tuples (pickling the dataclasses would cost more than serving the request):
        ("served", ts, app, component, method, path, status, latency_ms, request_id, cpu_s, memory, failure)
        ("output", ts, app, component, request_id, stream, text)
    """

    def __init__(self, send: Any) -> None:
        self._send = send
        self._items: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="wasmdev-reports", daemon=True)
        self._thread.start()

    # RequestObserver, called on the server's threads
    def request_served(self, s: Any) -> None:
        item = (
            "served", time.time(), s.app, s.component, s.method, s.path, s.status, s.latency_ms,
            s.request_id, s.stats.cpu_seconds, s.stats.memory_bytes, s.failure,
        )  # fmt: skip
        self._add(item)

    def guest_output(self, app: str, component: str, request_id: str, stream: Any, text: str) -> None:
        self._add(("output", time.time(), app, component, request_id, stream.value, text))

    def _add(self, item: tuple[Any, ...]) -> None:
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
                    self._send(("report", items))
                except OSError:
                    return  # wasmdev is gone
            if self._closing:
                return

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=5)


class _Worker:
    def __init__(self, control: socket.socket, fds: socket.socket, options: dict[str, Any]) -> None:
        # Imported here: the server side imports ``pack`` from this module without wasmtime.
        from devenv.targets.local.compile_cache import CompileCache
        from devenv.targets.local.executor import RequestLimits
        from devenv.targets.local.runtime import WasmRuntime
        from devenv.targets.local.server import LocalServer

        self.control = control
        self.fds = fds
        self._send_lock = threading.Lock()
        self.runtime = WasmRuntime()
        if self.runtime.config_key != options["config_key"]:
            raise RuntimeError(
                f"this process's wasmtime engine ({self.runtime.config_key}) differs from "
                f"wasmdev's ({options['config_key']})"
            )
        self.cache = CompileCache(Path(options["cache_dir"]), options["config_key"])
        self.limits = RequestLimits(timeout_s=options["timeout_s"], memory_bytes=options["memory_bytes"])
        self.staging_root = Path(tempfile.mkdtemp(prefix="wasmdev-files-"))
        self._stagings = itertools.count(1)
        self.reports = _Reports(self.send)
        self.server = LocalServer(
            options["host"],
            self.reports,
            workers=options["threads"],
            request_id_prefix=f"{options['index']}-",
            shared_accept=True,
        )
        self.server.start()

    def send(self, message: tuple[Any, ...]) -> None:
        frame = pack(message)
        with self._send_lock:
            self.control.sendall(frame)

    def serve(self) -> None:
        stream = self.control.makefile("rb", buffering=64 * 1024)
        try:
            while True:
                header = stream.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    break  # wasmdev closed its end: finish and exit
                size = _HEADER.unpack(header)[0]
                body = stream.read(size)
                if len(body) < size:
                    break
                self.handle(pickle.loads(body))
        finally:
            self.stop()

    def handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "deploy":
            _, app, seq, built = message
            self.send(("done", "deploy", app, seq, self._deploy(app, seq, built)))
        elif kind == "listen":
            _, app = message
            _, fds, _, _ = socket.recv_fds(self.fds, 1, 1)  # one byte: one descriptor
            sock = socket.socket(fileno=fds[0])
            self.server._call(self.server.listen(app, 0, sock=sock))
        elif kind == "remove":
            _, app, seq = message
            self.server._call(self.server.remove(app))
            self.send(("done", "remove", app, seq, ""))
        elif kind == "interrupt":
            self.runtime.interrupt_all()

    def _deploy(self, app: str, seq: int, built: Any) -> str:
        from devenv.targets.local.version_builder import build_version

        # Its own name each time: a rollback deploys an earlier seq again, whose retired
        # version may still be serving a request from its files.
        staging = self.staging_root / f"{app}-{seq}-{next(self._stagings)}"
        try:
            plan = build_version(built, self.runtime, self.cache, self.limits, staging)
            self.server._call(self.server.swap(app, plan.version))
        except Exception as err:  # reported to the deploy, which fails with this reason
            shutil.rmtree(staging, ignore_errors=True)
            what = getattr(err, "what", None) or f"{type(err).__name__}: {err}"
            return str(what)
        return ""

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
    except Exception:
        traceback.print_exc()  # to this process's log file, which wasmdev quotes
        return 2
    worker.send(("ready",))
    worker.serve()
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown racing wasmtime's own (see LocalTarget.close)
