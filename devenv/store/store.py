"""The store: one EngineState, bounded stream buffers, dispatch from any thread, subscribers.

Subscribers are called synchronously on the dispatching thread, after the lock is released, with
the new state and the action. They must be quick and thread-safe: the TUI's subscriber only marks
itself dirty and lets its own timer read the store; the headless printer writes a line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from devenv.model import EngineState
from devenv.store import actions as a
from devenv.store.buffers import LogBuffer, MetricsBuffer
from devenv.store.reducer import reduce

Subscriber = Callable[[EngineState, a.Action], None]


class Store:
    def __init__(
        self,
        state: EngineState | None = None,
        *,
        max_log_lines: int = 20_000,
        max_requests_per_app: int = 5_000,
        max_samples_per_app: int = 600,
    ) -> None:
        self._state = state or EngineState()
        self._lock = threading.RLock()
        self._subscribers: list[Subscriber] = []
        self.logs = LogBuffer(max_log_lines)
        self.metrics = MetricsBuffer(max_requests_per_app, max_samples_per_app)

    @property
    def state(self) -> EngineState:
        return self._state

    def dispatch(self, action: a.Action) -> None:
        match action:
            case a.LogEmitted(line=line):
                self.logs.append(line)
            case a.RequestServed(record=record):
                self.metrics.add_request(record)
            case a.ResourceSampled(sample=sample):
                self.metrics.add_sample(sample)
            case a.LogsCleared():
                self.logs.clear()
            case _:
                with self._lock:
                    self._state = reduce(self._state, action)
        for subscriber in list(self._subscribers):
            try:
                subscriber(self._state, action)
            except Exception:  # a broken subscriber must not take the engine down
                import logging

                logging.getLogger(__name__).exception("store subscriber failed on %r", action)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe
