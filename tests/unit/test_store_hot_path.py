"""The store's per-request path (log lines, request records) and the guest pool's batched
completions: fast paths must keep the documented semantics."""

from __future__ import annotations

import asyncio
import threading

import pytest

from devenv.model import LogLine, LogStream, RequestRecord
from devenv.store import actions as a
from devenv.store.buffers import LogBuffer
from devenv.store.store import Store
from devenv.targets.local.guest_pool import GuestPool


def test_log_buffer_stamps_a_copy_with_every_field_kept() -> None:
    buf = LogBuffer(10)
    line = LogLine(1.5, "app", LogStream.STDERR, "text", component="c", request_id="r1", level="warn")
    first = buf.append(line)
    second = buf.append(line)
    assert line.seq == 0  # the caller's line is not changed
    assert (first.seq, second.seq) == (1, 2)
    assert (first.ts, first.app, first.stream, first.text) == (1.5, "app", LogStream.STDERR, "text")
    assert (first.component, first.request_id, first.level) == ("c", "r1", "warn")
    assert buf.since(0).lines == (first, second)


def test_store_routes_high_rate_actions_and_tells_subscribers() -> None:
    store = Store()
    seen: list[type] = []
    unsubscribe = store.subscribe(lambda state, action: seen.append(type(action)))
    store.dispatch(a.LogEmitted(LogLine(1.0, "app", LogStream.REQUEST, "GET / 200")))
    store.dispatch(a.RequestServed(RequestRecord(1.0, "app", "c", "GET", "/", 200, 1.0)))
    assert seen == [a.LogEmitted, a.RequestServed]
    assert [line.text for line in store.logs.tail(5)] == ["GET / 200"]
    assert len(store.metrics.requests("app")) == 1
    unsubscribe()
    store.dispatch(a.LogEmitted(LogLine(2.0, "app", LogStream.REQUEST, "again")))
    assert len(seen) == 2


def test_guest_pool_settles_every_result_and_error_of_a_burst() -> None:
    pool = GuestPool(4)
    gate = threading.Event()

    def job(i: int) -> int:
        gate.wait(5)  # finish together: many results land in one drain
        if i % 7 == 0:
            raise ValueError(i)
        return i * 2

    async def main() -> list[object]:
        futures = [pool.run(job, i) for i in range(200)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        pool.shutdown()
    for i, result in enumerate(results):
        if i % 7 == 0:
            assert isinstance(result, ValueError)
        else:
            assert result == i * 2


def test_guest_pool_drops_the_result_of_a_cancelled_request() -> None:
    pool = GuestPool(1)
    started = threading.Event()
    release = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "late"

    async def main() -> str:
        future = pool.run(slow)
        await asyncio.to_thread(started.wait, 5)
        future.cancel()
        release.set()
        return await pool.run(lambda: "next")  # the pool and the loop keep working

    try:
        assert asyncio.run(main()) == "next"
    finally:
        pool.shutdown()


@pytest.mark.parametrize("loops", [2])
def test_guest_pool_answers_on_each_callers_loop(loops: int) -> None:
    pool = GuestPool(2)
    try:
        for _ in range(loops):  # a loop closed and a new one: results go to the right loop
            assert asyncio.run(_twice(pool)) == [1, 2]
    finally:
        pool.shutdown()


async def _twice(pool: GuestPool) -> list[int]:
    return list(await asyncio.gather(pool.run(lambda: 1), pool.run(lambda: 2)))


def test_char_pointers_point_at_each_items_nul_terminated_bytes() -> None:
    import ctypes

    from devenv.targets.local.guest_ffi import _char_pointers

    items = [b"PATH_INFO", b"", "caf\u00e9".encode(), b"a\0b"]
    pointers, alive = _char_pointers(items)
    address = pointers if isinstance(pointers, int) else ctypes.addressof(pointers)  # type: ignore[arg-type]
    read = [ctypes.string_at(p) for p in (ctypes.c_void_p * len(items)).from_address(address)]
    assert read == [b"PATH_INFO", b"", "caf\u00e9".encode(), b"a"]  # C stops at a NUL, as before
    assert alive is not None
