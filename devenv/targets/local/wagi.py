"""Runs WAGI guests: WASI preview 1 command modules speaking CGI over stdin/stdout/env.

One ``WagiRunner`` per (component, build). It holds an ``InstancePre`` (module compiled and WASI
imports resolved once, at deploy) and gives every request a fresh Store and instance, so no state
leaks between requests and a crashed request cannot poison the next one.

Guest stdio goes through memfds owned by the worker thread (see ``_ThreadStdio``): wasmtime-py's
stdin takes only a path, and its in-memory stdout callbacks cost ~0.7 ms a request.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import wasmtime

from devenv.model import LogStream, Route
from devenv.targets.local.cgi import (
    REQUEST_VARIABLES,
    based_route,
    build_argv,
    build_env,
    parse_output,
    request_env,
    route_env,
)
from devenv.targets.local.executor import (
    ExecutionStats,
    GuestError,
    GuestLog,
    GuestRequest,
    GuestResponse,
    RequestLimits,
    last_line,
)
from devenv.targets.local.file_mounts import Preopen
from devenv.targets.local.guest_ffi import GuestStore, WasiSetup
from devenv.targets.local.guest_watch import GuestWatch, stopped_reason
from devenv.targets.local.runtime import WasmRuntime

MAX_STDOUT_BYTES = 64 * 1024 * 1024  # a response bigger than this is a guest bug, not a page
MAX_STDERR_BYTES = 64 * 1024  # per request; the rest is cut with a note
MAX_STDERR_LINES = 200


class _StdioFiles:
    """Three memfds, reused across one worker thread's requests; wasmtime opens them by path.

    Opening ``/proc/self/fd/N`` gives wasmtime its own file description (offset 0) and, for
    stdout/stderr, truncates the file, so each request starts from empty files.
    """

    def __init__(self) -> None:
        self.stdin_fd = os.memfd_create("wasmdev-stdin", os.MFD_CLOEXEC)
        self.stdout_fd = os.memfd_create("wasmdev-stdout", os.MFD_CLOEXEC)
        self.stderr_fd = os.memfd_create("wasmdev-stderr", os.MFD_CLOEXEC)
        self.stdin_path = f"/proc/self/fd/{self.stdin_fd}".encode()
        self.stdout_path = f"/proc/self/fd/{self.stdout_fd}".encode()
        self.stderr_path = f"/proc/self/fd/{self.stderr_fd}".encode()

    def load_stdin(self, body: bytes) -> bytes | None:
        if not body:
            return None  # wasmtime's default stdin is empty: the guest reads EOF
        os.ftruncate(self.stdin_fd, 0)
        os.pwrite(self.stdin_fd, body, 0)
        self.stdin_loaded = True
        return self.stdin_path

    stdin_loaded = False

    def release(self) -> None:
        """After a request: give back what its body and output took. A memfd is memory, and a
        thread kept its last request's (up to 64 MiB each way) until its next request."""
        if self.stdin_loaded:
            os.ftruncate(self.stdin_fd, 0)
            self.stdin_loaded = False
        for fd in (self.stdout_fd, self.stderr_fd):
            if os.fstat(fd).st_size > _KEEP_BYTES:
                os.ftruncate(fd, 0)

    def __del__(self) -> None:  # the thread ended: its thread-local state, and these, go
        for fd in (self.stdin_fd, self.stdout_fd, self.stderr_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class _ThreadStdio(threading.local):
    def __init__(self) -> None:
        self.files = _StdioFiles()


_stdio = _ThreadStdio()


_FIRST_READ = 64 * 1024  # most responses fit: one pread, no fstat
_KEEP_BYTES = 64 * 1024  # stdout/stderr this small stay allocated between requests (truncated on open)


def _read_all(fd: int, limit: int) -> tuple[bytes, bool]:
    """The file's bytes (at most ``limit``) and whether there were more."""
    data = os.pread(fd, min(_FIRST_READ, limit + 1), 0)
    if len(data) <= limit and len(data) < _FIRST_READ:
        return data, False
    size = os.fstat(fd).st_size
    return os.pread(fd, min(size, limit), 0), size > limit


@dataclass(frozen=True)
class WagiConfig:
    route: Route  # the trigger's route as written in spin.toml
    argv_template: str
    entrypoint: str
    http_base: str
    environment: tuple[tuple[str, str], ...]
    preopens: tuple[Preopen, ...]


class WagiRunner:
    """A ``ComponentRunner`` for one WAGI component of one build."""

    kind = "wagi"

    def __init__(
        self,
        component_id: str,
        pre: wasmtime.InstancePre,
        runtime: WasmRuntime,
        limits: RequestLimits,
        config: WagiConfig,
    ) -> None:
        self.component_id = component_id
        self.timeout_s = limits.timeout_s
        self._pre = pre
        self._runtime = runtime
        self._engine = runtime.engine
        self._deadline_ticks = runtime.deadline_ticks(limits.timeout_s)
        self._limits = limits
        self._config = config
        self._entrypoint = config.entrypoint.encode()
        self._component_env = [(k.encode(), v.encode(), k) for k, v in config.environment]
        # What is the same for every request of this route, encoded once: the route's CGI
        # variables and the component's `environment` (minus names CGI sets, which win).
        self._route = config.route
        self._served_route = based_route(config.http_base, config.route)
        fixed = route_env(config.route, config.http_base)
        for key, value in config.environment:
            if key not in fixed and key not in REQUEST_VARIABLES and not key.startswith("HTTP_"):
                fixed[key] = value
        self._fixed_names = _encode_all(list(fixed))
        self._fixed_values = _encode_all(list(fixed.values()))
        # Component variables a request header could override (HTTP_*): checked per request.
        self._header_like_env = [(n, v, k) for n, v, k in self._component_env if k.startswith("HTTP_")]

    def _environment(self, request: GuestRequest) -> tuple[list[bytes], list[bytes]]:
        if request.route != self._route:  # not this runner's route: build it all
            cgi = build_env(request, self._config.http_base)
            names, values = _encode_all(list(cgi)), _encode_all(list(cgi.values()))
            extra = self._component_env
        else:
            cgi = request_env(request, self._served_route)
            names = self._fixed_names + _encode_all(list(cgi))
            values = self._fixed_values + _encode_all(list(cgi.values()))
            extra = self._header_like_env
        for name, value, key in extra:  # the component's own, unless CGI set that name
            if key not in cgi:
                names.append(name)
                values.append(value)
        return names, values

    def close(self) -> None:
        """Nothing to release: a WAGI module gets no Spin host APIs, and each request's files
        are its own."""

    def handle(self, request: GuestRequest, log: GuestLog) -> tuple[GuestResponse, ExecutionStats]:
        stdio = _stdio.files
        try:
            return self._handle(request, log, stdio)
        finally:
            stdio.release()

    def _handle(
        self, request: GuestRequest, log: GuestLog, stdio: _StdioFiles
    ) -> tuple[GuestResponse, ExecutionStats]:
        names, values = self._environment(request)
        wasi = WasiSetup()
        try:
            wasi.argv([a.encode() for a in build_argv(self._config.argv_template, request)])
            wasi.env(names, values)
            wasi.stdio(stdio.load_stdin(request.body), stdio.stdout_path, stdio.stderr_path)
            for p in self._config.preopens:
                wasi.preopen_read_only(p.host_dir, p.guest_dir)
        except BaseException:
            wasi.discard()
            raise
        ticks = self._runtime.ticks_until(request.deadline, self.timeout_s)
        runtime = self._runtime
        watch = GuestWatch(
            request.deadline or time.monotonic() + self.timeout_s, request.client_gone, lambda: runtime.stopping
        )
        store = GuestStore(self._engine, wasi, ticks, self._limits.memory_bytes, watch)

        failure: str | None = None
        cpu_start = time.thread_time()
        try:
            store.instantiate(self._pre)
            if not store.call_export(self._entrypoint):
                failure = f"the module exports no function `{self._config.entrypoint}` (the WAGI entrypoint)"
        except wasmtime.ExitTrap as exit_:
            if exit_.code != 0:
                failure = f"exited with status {exit_.code}"
        except wasmtime.Trap as trap:
            failure = stopped_reason(watch, self.timeout_s) or self._trap_reason(trap, store.memory_size())
        except wasmtime.WasmtimeError as err:  # instantiation: e.g. memory over the cap
            failure = stopped_reason(watch, self.timeout_s) or last_line(str(err))
            if "memory" in failure and "limit" in failure:
                failure = f"out of memory: the module needs more than the {self._mib()} MiB cap"
        memory = store.memory_size()
        cpu = time.thread_time() - cpu_start
        # Free the store now: that closes wasmtime's handles on the stdio files we read next.
        store.close()
        stats = ExecutionStats(cpu_seconds=cpu, memory_bytes=memory)

        self._forward_stderr(stdio.stderr_fd, log)
        if failure is not None:
            raise GuestError(failure, stats)
        stdout, truncated = _read_all(stdio.stdout_fd, MAX_STDOUT_BYTES)
        if truncated:
            raise GuestError(f"response larger than {MAX_STDOUT_BYTES // (1024 * 1024)} MiB", stats)
        try:
            return parse_output(stdout, self.component_id), stats
        except GuestError as err:
            raise GuestError(err.reason, stats) from None

    def _trap_reason(self, trap: wasmtime.Trap, memory_size: int) -> str:
        if trap.trap_code is wasmtime.TrapCode.INTERRUPT:
            if self._runtime.stopping:
                return "stopped: wasmdev is shutting down"
            return f"timed out after {self._limits.timeout_s:g}s (the request deadline)"
        # A refused memory.grow shows up as whatever the guest does next (usually a trap):
        # near the cap, that trap is the out-of-memory.
        if memory_size + 2 * 1024 * 1024 >= self._limits.memory_bytes:
            return f"out of memory: linear memory reached the {self._mib()} MiB cap"
        return "trapped: " + last_line(str(trap))

    def _mib(self) -> int:
        return self._limits.memory_bytes // (1024 * 1024)

    @staticmethod
    def _forward_stderr(fd: int, log: GuestLog) -> None:
        data, truncated = _read_all(fd, MAX_STDERR_BYTES)
        if not data:
            return
        lines = data.decode("utf-8", errors="replace").splitlines()
        for line in lines[:MAX_STDERR_LINES]:
            log(LogStream.STDERR, line)
        if truncated or len(lines) > MAX_STDERR_LINES:
            log(LogStream.STDERR, "[wasmdev: stderr of this request cut here]")


def _encode_all(items: list[str]) -> list[bytes]:
    """UTF-8 encode many short strings with one encode and one split (measurably cheaper than one
    encode each, per request); falls back when an item itself contains the separator."""
    joined = "\0".join(items).encode()
    parts = joined.split(b"\0")
    return parts if len(parts) == len(items) else [i.encode() for i in items]
