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
from devenv.store.buffers import ExchangeBuffer, LogBuffer, MetricsBuffer
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
        max_exchanges_per_app: int = 50,
    ) -> None:
        self._state = state or EngineState()
        self._lock = threading.RLock()
        self._subscribers: list[Subscriber] = []
        # A snapshot dispatch iterates without copying (dispatch runs per log line and request);
        # replaced, never mutated, under the lock.
        self._snapshot: tuple[Subscriber, ...] = ()
        self.logs = LogBuffer(max_log_lines)
        self.metrics = MetricsBuffer(max_requests_per_app, max_samples_per_app)
        self.exchanges = ExchangeBuffer(max_exchanges_per_app)

    @property
    def state(self) -> EngineState:
        return self._state

    def dispatch(self, action: a.Action) -> None:
        # The two high-rate actions first, by exact type (cheaper than ``match``'s class patterns).
        kind = type(action)
        if kind is a.LogEmitted:
            self.logs.append(action.line)  # type: ignore[attr-defined]
        elif kind is a.RequestServed:
            self.metrics.add_request(action.record)  # type: ignore[attr-defined]
        else:
            match action:
                case a.LogEmitted(line=line):
                    self.logs.append(line)
                case a.RequestServed(record=record):
                    self.metrics.add_request(record)
                case a.ResourceSampled(sample=sample):
                    self.metrics.add_sample(sample)
                case a.RequestRecorded(exchange=exchange):
                    self.exchanges.add(exchange)
                case a.LogsCleared():
                    self.logs.clear()
                case _:
                    with self._lock:
                        self._state = reduce(self._state, action)
        for subscriber in self._snapshot:
            try:
                subscriber(self._state, action)
            except Exception:  # a broken subscriber must not take the engine down
                import logging

                logging.getLogger(__name__).exception("store subscriber failed on %r", action)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        with self._lock:
            self._subscribers.append(subscriber)
            self._snapshot = tuple(self._subscribers)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)
                    self._snapshot = tuple(self._subscribers)

        return unsubscribe
