"""wasi:keyvalue/atomics against one store file shared by several connections, as the serving
processes of one app share ``.spin/sqlite_key_value.db``: no increment and no compare-and-swap may
be lost to another connection's write between its read and its write."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from devenv.targets.local.spin.state import KV_TABLE, KvStore, SqliteFile

WORKERS = 4
ROUNDS = 150


def _hammer_once(path: Path, work: Callable[[KvStore], None]) -> list[SqliteFile]:
    return _hammer(path, work, rounds=1)


def _hammer(path: Path, work: Callable[[KvStore], None], rounds: int = ROUNDS) -> list[SqliteFile]:
    # One SqliteFile (one connection, one lock) per worker: the lock of one does not guard the
    # others, exactly as between two serving processes.
    files = [SqliteFile(path, KV_TABLE) for _ in range(WORKERS)]
    start = threading.Barrier(WORKERS)
    errors: list[BaseException] = []

    def run(file: SqliteFile) -> None:
        store = KvStore("default", file)
        start.wait()
        try:
            for _ in range(rounds):
                work(store)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return files


def _count(path: Path) -> int:
    reader = SqliteFile(path, KV_TABLE)
    try:
        value = KvStore("default", reader).get("n")
    finally:
        reader.close()
    assert value is not None
    return int.from_bytes(value, "little", signed=True)


def test_increments_from_separate_connections_are_all_counted(tmp_path: Path) -> None:
    path = tmp_path / ".spin" / "sqlite_key_value.db"
    files = _hammer(path, lambda store: store.increment("n", 1))
    for f in files:
        f.close()
    assert _count(path) == WORKERS * ROUNDS


def test_compare_and_swap_succeeds_for_only_one_of_racing_connections(tmp_path: Path) -> None:
    path = tmp_path / ".spin" / "sqlite_key_value.db"
    wins: list[int] = []  # list.append is atomic under the GIL

    def claim_each_slot(store: KvStore) -> None:
        # Every worker tries to claim the same slots in the same order: a slot that is still
        # missing may be taken by exactly one of them.
        for slot in range(ROUNDS):
            if store.swap_if(f"slot-{slot}", None, b"taken"):
                wins.append(slot)

    files = _hammer_once(path, claim_each_slot)
    for f in files:
        f.close()
    assert sorted(wins) == list(range(ROUNDS))


def test_a_failed_write_transaction_is_rolled_back_and_the_file_stays_usable(tmp_path: Path) -> None:
    file = SqliteFile(tmp_path / "kv.db", KV_TABLE)
    store = KvStore("default", file)
    store.set("n", (1).to_bytes(8, "little", signed=True))
    try:
        with file.write_transaction() as conn:
            conn.execute("UPDATE spin_key_value SET value=? WHERE key='n'", (b"x",))
            raise RuntimeError("guest trapped mid-write")
    except RuntimeError:
        pass
    assert store.increment("n", 2) == 3
    file.close()
