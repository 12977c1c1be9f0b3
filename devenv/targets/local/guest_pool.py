"""The threads that run guests: a fixed pool fed by a queue, answering on the server's loop.

``loop.run_in_executor`` would do, but per request it builds a concurrent Future, takes the
executor's idle semaphore and chains two futures across threads; profiled under load, that
bookkeeping cost the HTTP loop thread more than parsing the request. Here a job is one queue put
and one ``call_soon_threadsafe``. Threads start with the pool, so the first requests don't pay
for thread creation either.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = object()


class GuestPool:
    def __init__(self, workers: int, name: str = "wasmdev-guest") -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on a pool thread; the future resolves on the calling loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            loop, future, fn, args = job
            try:
                result = fn(*args)
            except BaseException as err:  # handed to the awaiting request, never lost
                _resolve(loop, future, None, err)
            else:
                _resolve(loop, future, result, None)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the threads after the jobs already queued (each bounded by its guest deadline)."""
        for _ in self._threads:
            self._jobs.put(_STOP)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=timeout)


def _resolve(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, error: BaseException | None
) -> None:
    def settle() -> None:
        if future.done():  # the request was cancelled (client went away)
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop already closed: nobody is waiting any more
        pass
