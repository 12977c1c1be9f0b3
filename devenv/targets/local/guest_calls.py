"""What happens to a request once the server has routed it: its guest runs on a pool thread and
the outcome is reported (a ``ServedRequest``, and the exchange while recording); a request the
server refuses (no route, a full line) is reported the same way.

The server (server.py) owns the HTTP side: ports, parsing, admission. This is the part that runs
off its loop, on the guest threads, so the loop's thread (the one every request passes through)
is left to parsing and writing HTTP.
"""

from __future__ import annotations

import itertools
import time
from typing import Protocol

from devenv.model import LogStream, RecordedExchange
from devenv.targets.base import REPLAY_HEADER
from devenv.targets.local.executor import ExecutionStats, GuestError, GuestRequest, GuestResponse
from devenv.targets.local.messages import GuestOutput, ServedRequest
from devenv.targets.local.router import RouteEntry, ServingVersion

__all__ = ["RETRY_AFTER_S", "GuestCalls", "RequestObserver"]

RETRY_AFTER_S = "1"
_TEXT = (("Content-Type", "text/plain"),)
_request_ids = itertools.count(1)


class RequestObserver(Protocol):
    """Told about every request; called from the server's threads (loop or guest pool)."""

    def request_served(self, served: ServedRequest) -> None: ...

    def guest_output(self, output: GuestOutput) -> None: ...


class GuestCalls:
    """Runs routed requests' guests and reports every request. ``request_id_prefix`` keeps ids
    unique when several processes serve (each counts from 1); ``record_body_bytes`` caps each
    body kept while ``recording`` is on."""

    def __init__(
        self, observer: RequestObserver, request_id_prefix: str = "", record_body_bytes: int = 1024 * 1024
    ):
        self.observer = observer
        self.request_id_prefix = request_id_prefix
        self.record_body_bytes = record_body_bytes
        self.recording = False  # set from any thread: read once per request

    def next_id(self) -> str:
        return f"{self.request_id_prefix}{next(_request_ids):06x}"

    def refused(
        self, app: str, component: str, method: str, path: str, status: int, started: float, failure: str = ""
    ) -> None:
        """Report a request answered without running a guest (404, 503)."""
        latency_ms = (time.perf_counter() - started) * 1000
        served = ServedRequest(
            app,
            component,
            method,
            path,
            status,
            latency_ms,
            self.next_id(),
            ExecutionStats(),
            failure,
            time.time(),
        )
        self.observer.request_served(served)

    def execute(
        self, version: ServingVersion, app: str, entry: RouteEntry, request: GuestRequest, started: float
    ) -> GuestResponse:
        """Run the guest, report the request and release ``version``'s lease, on a pool thread.
        The latency recorded runs from the request's arrival to its response being ready."""
        try:
            return self._run_guest(app, entry, request, started)
        finally:
            version.release()

    def _run_guest(self, app: str, entry: RouteEntry, request: GuestRequest, started: float) -> GuestResponse:
        component = entry.runner.component_id
        observer = self.observer

        def log(stream: LogStream, text: str) -> None:
            observer.guest_output(GuestOutput(app, component, request.request_id, stream, text, time.time()))

        if request.deadline and time.monotonic() >= request.deadline:
            # Waited out its whole deadline for a thread: running it now would only make the
            # line behind it wait longer.
            failure = "waited for a guest thread until its deadline"
            body = f"wasmdev: app `{app}` is busy; this request waited past its deadline\n"
            response = GuestResponse(503, (*_TEXT, ("Retry-After", RETRY_AFTER_S)), body.encode())
            latency_ms = (time.perf_counter() - started) * 1000
            observer.request_served(
                ServedRequest(app, component, request.method, request.path, 503, latency_ms,
                              request.request_id, ExecutionStats(), failure, time.time())
            )  # fmt: skip
            return response

        failure = ""
        try:
            response, stats = entry.runner.handle(request, log)
        except GuestError as err:
            failure = err.reason
            body = f"wasmdev: component `{component}` failed this request: {err.reason}\n"
            response, stats = GuestResponse(500, _TEXT, body.encode()), err.stats
        except Exception as err:  # a host bug must cost one request, not the server
            failure = f"host error: {type(err).__name__}: {err}"
            body = f"wasmdev: internal error running component `{component}`: {failure}\n"
            response, stats = GuestResponse(500, _TEXT, body.encode()), ExecutionStats()
        latency_ms = (time.perf_counter() - started) * 1000
        exchange = self._exchange(app, component, request, response, latency_ms) if self.recording else None
        served = ServedRequest(
            app,
            component,
            request.method,
            request.path,
            response.status,
            latency_ms,
            request.request_id,
            stats,
            failure,
            time.time(),
            exchange,
        )
        observer.request_served(served)
        return response

    def _exchange(
        self, app: str, component: str, request: GuestRequest, response: GuestResponse, latency_ms: float
    ) -> RecordedExchange | None:
        """The request and response as served, for replay; None for wasmdev's own replays.
        Bodies are referenced, not copied, unless they must be cut at the cap."""
        for name, _ in request.headers:
            if len(name) == len(REPLAY_HEADER) and name.lower() == REPLAY_HEADER:
                return None
        cap = self.record_body_bytes
        body, response_body = request.body, response.body
        return RecordedExchange(
            ts=time.time(),
            app=app,
            request_id=request.request_id,
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            body=body if len(body) <= cap else body[:cap],
            status=response.status,
            response_headers=response.headers,
            response_body=response_body if len(response_body) <= cap else response_body[:cap],
            latency_ms=latency_ms,
            body_truncated=len(body) > cap,
            response_truncated=len(response_body) > cap,
            component=component,
        )
