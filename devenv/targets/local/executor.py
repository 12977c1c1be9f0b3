"""The seam between the local HTTP server and what runs a component.

The server turns an HTTP request into a ``GuestRequest``, picks the ``ComponentRunner`` of the
version currently serving the matched route, and calls ``handle`` in a worker thread. Runners
exist per (component, build): WAGI modules (wagi.py) and wasi:http components (component_host.py).
A runner is immutable once built, so a hot swap is replacing the router's table of runners; a
request in flight keeps the runner it started with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from devenv.model import LogStream, Route


@dataclass(frozen=True)
class RequestLimits:
    timeout_s: float = 30.0  # wall-clock deadline, enforced with epoch interruption
    memory_bytes: int = 128 * 1024 * 1024  # linear memory cap (Store.set_limits)


@dataclass(frozen=True)
class GuestRequest:
    method: str
    path: str  # the full request path, e.g. "/static/css/site.css"
    query: str  # without the "?"
    headers: tuple[tuple[str, str], ...]
    body: bytes
    route: Route  # the manifest route that matched
    request_id: str
    client_addr: str = "127.0.0.1"
    client_port: int = 0
    server_host: str = "127.0.0.1"
    server_port: int = 0
    scheme: str = "http"
    # time.monotonic() by which the guest must be done: its arrival plus the request timeout,
    # so time spent waiting for a guest thread counts. 0: the timeout from when it starts.
    deadline: float = 0.0
    # Set once the client has gone (it closed the connection): a guest still running is stopped.
    client_gone: threading.Event | None = field(default=None, compare=False)


@dataclass(frozen=True)
class GuestResponse:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class ExecutionStats:
    cpu_seconds: float = 0.0  # thread CPU time spent in the guest call
    memory_bytes: int = 0  # linear memory size at the end of the request (its high-water mark)


class GuestError(Exception):
    """The guest failed this request (trap, exit code, timeout, out of memory, bad CGI output).

    ``reason`` is short and goes into the log line and the 500 body; the server keeps serving.
    """

    def __init__(self, reason: str, stats: ExecutionStats | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stats = stats or ExecutionStats()


# log(stream, text): guest output and host notes for this request, tagged by the caller.
GuestLog = Callable[[LogStream, str], None]


class ComponentRunner(Protocol):
    component_id: str
    kind: str  # "wagi" or "wasi-http"
    timeout_s: float  # the request deadline, counted from the request's arrival

    def handle(self, request: GuestRequest, log: GuestLog) -> tuple[GuestResponse, ExecutionStats]:
        """Run one request on a fresh instance. Raises GuestError for a failed request."""
        ...

    def close(self) -> None:
        """Release what the runner holds open (Spin's store and database connections). Called
        once, when the version it belongs to is retired and its last request has finished."""
        ...


@dataclass
class RunnerTable:
    """One app version's routes, ready to serve: built and validated before it is swapped in."""

    digest: str
    routes: list[tuple[Route, ComponentRunner]] = field(default_factory=list)


def last_line(message: str) -> str:
    """wasmtime's last line is the cause ("wasm trap: wasm `unreachable` instruction executed")."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"
