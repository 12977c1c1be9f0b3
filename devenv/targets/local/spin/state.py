"""What one component may reach through Spin's host APIs, fixed per (component, build).

Key-value stores are SQLite files in Spin's own layout (table ``spin_key_value (store, key,
value)``, the default store in ``.spin/sqlite_key_value.db``), so a store written under ``spin up``
reads the same under ``wasmdev up`` and the other way round. SQLite databases are plain files
(the default one ``.spin/sqlite_db.db``). A ``None`` path is an in-memory store, as Spin makes for
a runtime-config entry without ``path``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

DEFAULT_STATE_DIR = ".spin"
DEFAULT_KV_FILE = "sqlite_key_value.db"
DEFAULT_SQLITE_FILE = "sqlite_db.db"


class SqliteFile:
    """One SQLite file (or in-memory database) shared by every request of the runners that use
    it: one connection, serialised by a lock (SQLite serialises writers anyway, and a Python
    connection must not be used by two threads at once). Opened on first use, so a deploy does
    not create files the app never touches."""

    def __init__(self, path: Path | None, setup: str = "") -> None:
        self.path = path
        self._setup = setup
        self._conn: sqlite3.Connection | None = None
        self.lock = threading.Lock()

    def connection(self) -> sqlite3.Connection:
        """The open connection; call with ``lock`` held. Raises ``sqlite3.Error``/``OSError``."""
        if self._conn is None:
            target = ":memory:"
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                target = str(self.path)
            # isolation_level=None: autocommit, each statement its own transaction, as Spin's
            # rusqlite connections run them.
            conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None, timeout=5.0)
            if self._setup:
                conn.execute(self._setup)
            self._conn = conn
        return self._conn

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error), with
        ``lock`` held. The lock only serialises this process's threads; each serving process has
        its own connection to the same file, so a read-then-write (an increment, a CAS) is atomic
        only if SQLite's write lock is taken before the read."""
        with self.lock:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")  # may fail too (busy past the timeout): rolled back below
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # the first error is the one to tell
                        conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


KV_TABLE = """CREATE TABLE IF NOT EXISTS spin_key_value (
    store TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (store, key)
)"""


class KvStore:
    """One labelled key-value store: its rows in a ``SqliteFile`` (several labels may share one
    file, told apart by the ``store`` column as in Spin). Raises ``sqlite3.Error`` on failure."""

    def __init__(self, label: str, file: SqliteFile) -> None:
        self.label = label
        self.file = file

    def get(self, key: str) -> bytes | None:
        with self.file.lock:
            row = (
                self.file.connection()
                .execute("SELECT value FROM spin_key_value WHERE store=? AND key=?", (self.label, key))
                .fetchone()
            )
        return None if row is None else bytes(row[0])

    def set(self, key: str, value: bytes) -> None:
        with self.file.lock:
            self.file.connection().execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT(store, key) DO UPDATE SET value=excluded.value",
                (self.label, key, value),
            )

    def delete(self, key: str) -> None:
        with self.file.lock:
            self.file.connection().execute(
                "DELETE FROM spin_key_value WHERE store=? AND key=?", (self.label, key)
            )

    def exists(self, key: str) -> bool:
        return self.get(key) is not None

    def keys(self) -> list[str]:
        with self.file.lock:
            rows = (
                self.file.connection()
                .execute("SELECT key FROM spin_key_value WHERE store=? ORDER BY key", (self.label,))
                .fetchall()
            )
        return [r[0] for r in rows]

    def increment(self, key: str, delta: int) -> int:
        """wasi:keyvalue/atomics increment: the value as a little-endian i64 (Spin's encoding),
        missing means 0; one write transaction, so atomic against every connection to the file
        (other serving processes, ``spin up``)."""
        with self.file.write_transaction() as conn:
            row = conn.execute(
                "SELECT value FROM spin_key_value WHERE store=? AND key=?", (self.label, key)
            ).fetchone()
            current = int.from_bytes(bytes(row[0]), "little", signed=True) if row is not None else 0
            new = current + delta
            conn.execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT(store, key) DO UPDATE SET value=excluded.value",
                (self.label, key, new.to_bytes(8, "little", signed=True)),
            )
        return new

    def swap_if(self, key: str, expected: bytes | None, value: bytes) -> bool:
        """Compare-and-swap: set ``value`` if the stored value is still ``expected``, in one write
        transaction (atomic across connections, as ``increment``)."""
        with self.file.write_transaction() as conn:
            row = conn.execute(
                "SELECT value FROM spin_key_value WHERE store=? AND key=?", (self.label, key)
            ).fetchone()
            now = None if row is None else bytes(row[0])
            if now != expected:
                return False
            conn.execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT(store, key) DO UPDATE SET value=excluded.value",
                (self.label, key, value),
            )
        return True


@dataclass(frozen=True)
class SpinHost:
    """A component's view of Spin's host APIs. Variable values are kept out of ``repr``: a secret
    must never reach a log line or the dashboard through a printed config."""

    component_id: str
    variables: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    key_value_stores: Mapping[str, KvStore] = field(default_factory=lambda: MappingProxyType({}))
    sqlite_databases: Mapping[str, SqliteFile] = field(default_factory=lambda: MappingProxyType({}))
    secret_names: frozenset[str] = frozenset()  # component variables whose value uses a secret

    def close(self) -> None:
        for store in self.key_value_stores.values():
            store.file.close()
        for db in self.sqlite_databases.values():
            db.close()
