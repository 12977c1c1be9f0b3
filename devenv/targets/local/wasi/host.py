"""Per-request host state: the resource table, the guest's log, the deadline, and trapping.

wasmtime-py hands a host function only a ``StoreContext``, not the Store's data, so the state of
the request running on this thread is found through a thread-local (``current()``). One request
runs on a thread at a time (the server calls ``handle`` in a worker thread), and the runner
activates a fresh ``HostContext`` for every Store: handles minted for one request name entries of
its own table only, and the whole table goes when the request ends, so nothing a guest forgot to
drop survives into the next request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NoReturn, TypeVar

from wasmtime import StoreContext
from wasmtime.component import ResourceAny, ResourceHost

from devenv.model import LogStream
from devenv.targets.local.file_mounts import Preopen
from devenv.targets.local.spin.state import SpinHost

GuestLogFn = Callable[[LogStream, str], None]


class Kind(IntEnum):
    """Host resource type ids (``ResourceType.host(id)``): one per WASI resource we implement.

    A resource keeps its id across interface versions (wasi:io/streams@0.2.0 and @0.2.9 name the
    same Python class), as wasmtime's own WASI does for semver-compatible imports.
    """

    POLLABLE = 1
    INPUT_STREAM = 2
    OUTPUT_STREAM = 3
    IO_ERROR = 4
    FIELDS = 10
    INCOMING_REQUEST = 11
    INCOMING_BODY = 12
    OUTGOING_RESPONSE = 13
    OUTGOING_BODY = 14
    RESPONSE_OUTPARAM = 15
    FUTURE_TRAILERS = 16
    OUTGOING_REQUEST = 17
    REQUEST_OPTIONS = 18
    INCOMING_RESPONSE = 19
    FUTURE_INCOMING_RESPONSE = 20
    DESCRIPTOR = 30
    DIRECTORY_ENTRY_STREAM = 31
    TERMINAL_INPUT = 40
    TERMINAL_OUTPUT = 41
    # Spin's host APIs (devenv/targets/local/spin): one id per resource and interface family
    SPIN_KV_STORE = 50  # fermyon:spin/key-value store
    WASI_KV_BUCKET = 51  # wasi:keyvalue bucket
    WASI_KV_CAS = 52
    SPIN_SQLITE_CONNECTION = 53  # fermyon:spin/sqlite@2 and spin:sqlite@3 connection
    SPIN_REDIS_CONNECTION = 54
    SPIN_PG_CONNECTION = 55
    SPIN_MYSQL_CONNECTION = 56
    SPIN_MQTT_CONNECTION = 57


class Resource:
    """A Python object the guest holds a handle to. Subclasses set ``KIND``."""

    KIND: Kind


class GuestTrap(Exception):
    """Raised in a host function to trap the guest; ``reason`` goes to the log and the 500."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GuestExit(GuestTrap):
    """The guest called wasi:cli/exit; ``success`` is its status."""

    def __init__(self, success: bool) -> None:
        super().__init__("exited with status " + ("0" if success else "1"))
        self.success = success


@dataclass(frozen=True)
class HostConfig:
    """What a component may see, from its manifest entry; fixed per (component, build)."""

    component_id: str
    environment: tuple[tuple[str, str], ...] = ()
    preopens: tuple[Preopen, ...] = ()
    allowed_outbound_hosts: tuple[str, ...] = ()
    # Spin's host APIs for this component (variables, stores, databases)
    spin: SpinHost | None = None
    # Where `self` / relative outbound URLs go: the app's own "host:port" on this machine.
    self_origin: str | None = None
    max_body_bytes: int = 64 * 1024 * 1024
    # What the host may hold for one request (bodies, file contents, outbound responses, header
    # values), counted as it is taken. The memory cap bounds the guest's linear memory only, so
    # without this a guest could make the host buffer without bound (reading a granted 60 MiB
    # file a hundred times, or one body per outbound request, each under max_body_bytes).
    max_host_bytes: int = 2 * 64 * 1024 * 1024 + 16 * 1024 * 1024


R = TypeVar("R", bound=Resource)


@dataclass
class HostContext:
    """Everything one request's host functions share. Created per Store, dropped with it."""

    config: HostConfig
    log: GuestLogFn
    deadline: float  # time.monotonic() after which the request has timed out
    timeout_s: float
    store: StoreContext | None = None  # the caller's context, valid during one host call
    table: dict[int, Resource] = field(default_factory=dict)
    trap_reason: str | None = None
    exit_success: bool | None = None
    response: Any = None  # what response-outparam.set delivered (see http_types)
    fs: Any = None  # the read-only file view, built on first use (see filesystem)
    stdout: Any = None  # line-buffered log sinks (see io)
    stderr: Any = None
    held_bytes: int = 0
    # Run when the request ends (close_all): connections a host function opened for the guest
    # (Redis, PostgreSQL) must not outlive the request even if the guest never dropped them.
    closers: list[Callable[[], None]] = field(default_factory=list)
    _next_rep: int = 1

    # -- handles ---------------------------------------------------------------------------

    def own(self, obj: Resource) -> ResourceHost:
        """Put ``obj`` in the table and mint an owned handle the guest receives."""
        rep = self._next_rep
        self._next_rep += 1
        self.table[rep] = obj
        return ResourceHost.own(rep, int(obj.KIND))

    def borrow(self, handle: ResourceAny, cls: type[R]) -> R:
        """The object behind a ``borrow<T>`` (or an ``own<T>`` the guest keeps)."""
        rep = self._rep(handle)
        obj = self.table.get(rep)
        if not isinstance(obj, cls):
            self.trap(f"invalid {cls.__name__} handle passed to the host")
        return obj

    def take(self, handle: ResourceAny, cls: type[R]) -> R:
        """The object behind an ``own<T>`` param: the guest gave it up, so its entry goes now
        (wasmtime runs no destructor for a handle moved into the host)."""
        rep = self._rep(handle)
        obj = self.table.pop(rep, None)
        if not isinstance(obj, cls):
            self.trap(f"invalid {cls.__name__} handle passed to the host")
        return obj

    def _rep(self, handle: ResourceAny) -> int:
        assert self.store is not None
        # to_host() both reads the rep and releases a borrow, which wasmtime requires before
        # the host call returns.
        return handle.to_host(self.store).rep

    def dropped(self, rep: int) -> None:
        self.table.pop(rep, None)

    def close_all(self) -> None:
        closers, self.closers = self.closers, []
        for close in closers:
            try:
                close()
            except Exception:  # noqa: BLE001 - a connection failing to close must not fail the request
                pass

    # -- outcomes --------------------------------------------------------------------------

    def note(self, text: str) -> None:
        """A host message about this request (denied access, unsupported import, …)."""
        self.log(LogStream.SYSTEM, f"[{self.config.component_id}] {text}")

    def hold(self, nbytes: int, what: str) -> None:
        """Count ``nbytes`` more the host keeps for this request; trap past ``max_host_bytes``."""
        self.held_bytes += nbytes
        if self.held_bytes > self.config.max_host_bytes:
            mib = self.config.max_host_bytes // (1024 * 1024)
            self.trap(f"out of memory: {what} would make the host hold more than {mib} MiB for this request")

    def trap(self, reason: str) -> NoReturn:
        """Fail this request from a host function; the first reason is logged and reported."""
        if self.trap_reason is None:
            self.trap_reason = reason
            self.note(reason)
        raise GuestTrap(reason)

    def sleep_until(self, monotonic_s: float) -> None:
        """Block the guest until a point in time, but never past the request's deadline: epoch
        interruption cannot stop a thread sleeping in the host."""
        wake = min(monotonic_s, self.deadline)
        delay = wake - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if monotonic_s > self.deadline and time.monotonic() >= self.deadline:
            self.trap(f"timed out after {self.timeout_s:g}s (the request deadline)")


_current = threading.local()


def current() -> HostContext:
    ctx: HostContext | None = getattr(_current, "ctx", None)
    if ctx is None:
        # A host function ran outside a runner's request: a bug in wasmdev, not the guest.
        raise GuestTrap("host function called with no active request")
    return ctx


def activate(ctx: HostContext | None) -> None:
    _current.ctx = ctx
