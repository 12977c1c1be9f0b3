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
import contextlib
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = object()
MAX_LENT = 64  # guest threads that may wait on outbound calls at once, each replaced meanwhile
_worker = threading.local()  # on a guest thread: how to lend its slot (GuestScheduler.lend)


@contextlib.contextmanager
def lend_guest_slot() -> Iterator[None]:
    """Around a guest's blocking wait on something outside it (an outbound HTTP call): its
    thread counts as free meanwhile and a spare thread serves in its place. A call into the
    same app needs a guest thread, and must never wait for the one that waits for it (with
    every thread a caller, an unrelated request waited out the whole deadline). A no-op off a
    guest thread."""
    lend: Callable[[int], bool] | None = getattr(_worker, "lend", None)
    if lend is None or not lend(+1):
        yield
        return
    try:
        yield
    finally:
        lend(-1)


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
        self._name = name
        self._extra = 0

    @property
    def threads(self) -> int:
        return len(self._threads)

    def grow(self) -> None:
        """One more thread, for a thread lending its slot (any thread may call this)."""
        t = threading.Thread(target=self._work, name=f"{self._name}-spare", daemon=True)
        t.start()

    def shrink(self) -> None:
        """One thread fewer once the queued jobs before it are done (the lent slot is back)."""
        self._jobs.put(_STOP)

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


class QueueFull(Exception):
    """Every guest thread is busy and the waiting line is full: answer 503 with Retry-After."""


class _Waiting:
    __slots__ = ("future", "fn", "args", "on_skip")

    def __init__(
        self, future: asyncio.Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], on_skip: Callable[[], None]
    ) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.on_skip = on_skip


class GuestScheduler:
    """Admission in front of a ``GuestPool``, on the server loop (never touched from a thread).

    Why not the pool's queue alone: it was unbounded and first-come-first-served, so six
    requests to a route stuck in a loop took every thread and queued everything behind them
    for the whole deadline. Here, with a pool of ``workers + 1`` threads:
    - at most that many jobs are handed to the pool, so a job starts the moment it is given;
    - one key (a request path) runs on at most ``workers`` threads, so other paths always keep
      a thread however stuck one path's guests are, while one busy path still gets as many
      threads as it had before the spare one was added;
    - the waiting line is bounded (``max_waiting``): past it ``submit`` raises QueueFull;
    - a job whose request was cancelled (its client went away) while it waited never starts.
    """

    def __init__(self, pool: GuestPool, workers: int, max_waiting: int) -> None:
        self._pool = pool
        self._per_key = max(1, workers)
        self._max_waiting = max_waiting
        self._free = pool.threads
        self._running: dict[object, int] = {}
        self._waiting: dict[object, deque[_Waiting]] = {}  # insertion order: round-robin
        self._waiting_count = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lent = 0  # touched on guest threads, under the lock
        self._lend_lock = threading.Lock()

    @property
    def waiting(self) -> int:
        return self._waiting_count

    def submit(
        self, key: object, fn: Callable[..., T], args: tuple[Any, ...], on_skip: Callable[[], None]
    ) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on a guest thread when one is free for ``key``; ``on_skip`` runs
        instead if the caller cancelled before it started."""
        loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._free > 0 and self._running.get(key, 0) < self._per_key:
            _chain(self._start(key, fn, args), future)
            return future
        if self._waiting_count >= self._max_waiting:
            raise QueueFull
        self._waiting.setdefault(key, deque()).append(_Waiting(future, fn, args, on_skip))
        self._waiting_count += 1
        return future

    def _start(self, key: object, fn: Callable[..., T], args: tuple[Any, ...]) -> asyncio.Future[T]:
        """The pool's own future: never cancelled by a caller, so it is done (and the thread
        counted free) only when the guest really finished."""
        self._free -= 1
        self._running[key] = self._running.get(key, 0) + 1
        job = self._pool.run(self._run_as, key, fn, args)
        job.add_done_callback(lambda _: self._finished(key))
        return job

    def _run_as(self, key: object, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """On the guest thread: ``fn`` may lend this thread's slot (``lend_guest_slot``)."""
        _worker.lend = lambda delta: self._lend(key, delta)
        try:
            return fn(*args)
        finally:
            _worker.lend = None

    def _lend(self, key: object, delta: int) -> bool:
        """On a guest thread: +1 lends its slot (False if too many are lent), -1 takes it back."""
        with self._lend_lock:
            if delta > 0 and self._lent >= MAX_LENT:
                return False
            self._lent += delta
        loop = self._loop
        if loop is None:
            return False
        if delta > 0:
            self._pool.grow()
        else:
            self._pool.shrink()
        loop.call_soon_threadsafe(self._capacity, key, delta)
        return True

    def _capacity(self, key: object, delta: int) -> None:
        # The lender's path counts one fewer running meanwhile too: a path calling itself.
        self._free += delta
        self._running[key] = self._running.get(key, 0) - delta
        if self._running[key] == 0:
            del self._running[key]
        if delta > 0:
            self._next()

    def _finished(self, key: object) -> None:
        self._free += 1
        left = self._running[key] - 1
        if left:
            self._running[key] = left
        else:
            del self._running[key]
        self._next()

    def _next(self) -> None:
        for key in list(self._waiting):
            if self._free <= 0:
                return
            line = self._waiting[key]
            while line and self._running.get(key, 0) < self._per_key and self._free > 0:
                item = line.popleft()
                self._waiting_count -= 1
                if item.future.done():  # cancelled: its client went away while it waited
                    item.on_skip()
                    continue
                job = self._start(key, item.fn, item.args)
                _chain(job, item.future)
            if not line:
                del self._waiting[key]
            else:  # this route had its turn: the others go first next time
                self._waiting[key] = self._waiting.pop(key)


def _chain(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    def copy(done: asyncio.Future[Any]) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif done.exception() is not None:
            target.set_exception(done.exception())  # type: ignore[arg-type]
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)
