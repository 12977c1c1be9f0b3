"""The threads that run guests: a fixed pool fed by a queue, answering on the server's loop.

``loop.run_in_executor`` would do, but per request it builds a concurrent Future, takes the
executor's idle semaphore and chains two futures across threads; profiled under load, that
bookkeeping cost the HTTP loop thread more than parsing the request. Here a job is one queue put,
and its result goes back through a per-loop completion list: only the first result of a batch
wakes the loop (``call_soon_threadsafe`` is a write to the loop's self-pipe, and a wake-up of an
idle loop); under load, one wake-up settles every request finished meanwhile. Threads start with
the pool, so the first requests don't pay for thread creation either.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = object()


class GuestPool:
    def __init__(self, workers: int, name: str = "wasmdev-guest") -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = (
            weakref.WeakKeyDictionary()
        )
        self._inbox_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on a pool thread; the future resolves on the calling loop."""
        loop = asyncio.get_running_loop()
        inbox = self._inboxes.get(loop)
        if inbox is None:
            with self._inbox_lock:
                inbox = self._inboxes.setdefault(loop, _Inbox(loop))
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((inbox, future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            inbox, future, fn, args = job
            try:
                result = fn(*args)
            except BaseException as err:  # handed to the awaiting request, never lost
                inbox.post(future, None, err)
            else:
                inbox.post(future, result, None)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the threads after the jobs already queued (each bounded by its guest deadline)."""
        for _ in self._threads:
            self._jobs.put(_STOP)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=timeout)


class _Inbox:
    """Results waiting for one loop. ``post`` runs on pool threads; ``_drain`` on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # weak: the pool's table of inboxes must not keep loops alive
        self._done: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self._lock = threading.Lock()
        self._wake_pending = False

    def post(self, future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        with self._lock:
            self._done.append((future, result, error))
            if self._wake_pending:
                return  # a drain is already scheduled and will see this result
            self._wake_pending = True
        loop = self._loop()
        try:
            if loop is None:
                raise RuntimeError("loop gone")
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop already closed: nobody is waiting any more
            with self._lock:
                self._done.clear()
                self._wake_pending = False

    def _drain(self) -> None:
        with self._lock:
            self._wake_pending = False  # results posted from now on schedule another drain
            done, self._done = self._done, deque()
        for future, result, error in done:
            if future.done():  # the request was cancelled (client went away)
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
