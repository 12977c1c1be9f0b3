"""What the local target's servers report, turned into store actions.

``StoreObserver`` is the ``RequestObserver`` the embedded server and the serving processes are
given: it is called on their threads (the server loop or a guest thread) and only dispatches,
which the store allows from any thread.
"""

from __future__ import annotations

import time

from devenv.model import LogLine, LogStream, RequestRecord
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.local.messages import GuestOutput, ServedRequest
from devenv.targets.local.usage import UsageMeter

__all__ = ["StoreObserver"]


class StoreObserver:
    """Each served request becomes a ``RequestServed``, a request log line and (while recording)
    a ``RequestRecorded``; each guest's output a log line. Guest CPU and memory go to ``usage``."""

    def __init__(self, store: Store, usage: UsageMeter) -> None:
        self.store = store
        self.usage = usage

    def note(self, app: str, text: str, level: str = "warn") -> None:
        """A line about ``app`` from wasmdev itself (a warning unless ``level`` says otherwise),
        in the app's log."""
        line = LogLine(ts=time.time(), app=app, stream=LogStream.SYSTEM, text=text, level=level)
        self.store.dispatch(a.LogEmitted(line))

    def request_served(self, served: ServedRequest) -> None:
        now = served.ts or time.time()
        error = served.status >= 500
        if served.component:
            self.usage.record(served.app, served.stats.cpu_seconds, served.stats.memory_bytes, error)
        self.store.dispatch(
            a.RequestServed(
                RequestRecord(
                    ts=now,
                    app=served.app,
                    component=served.component,
                    method=served.method,
                    path=served.path,
                    status=served.status,
                    latency_ms=served.latency_ms,
                    request_id=served.request_id,
                )
            )
        )
        text = f"{served.method} {served.path} {served.status} {served.latency_ms:.1f}ms"
        if served.failure:
            text += f" ({served.failure})"
        self.store.dispatch(
            a.LogEmitted(
                LogLine(
                    ts=now,
                    app=served.app,
                    stream=LogStream.REQUEST,
                    text=text,
                    component=served.component,
                    request_id=served.request_id,
                    level="error" if error else ("warn" if served.status >= 400 else "info"),
                )
            )
        )
        if served.exchange is not None:
            self.store.dispatch(a.RequestRecorded(served.exchange))

    def guest_output(self, output: GuestOutput) -> None:
        self.store.dispatch(
            a.LogEmitted(
                LogLine(
                    ts=output.ts,
                    app=output.app,
                    stream=output.stream,
                    text=output.text,
                    component=output.component,
                    request_id=output.request_id,
                    level="warn" if output.stream is LogStream.SYSTEM else "info",
                )
            )
        )
