"""SQLite: ``fermyon:spin/sqlite@2.0.0`` and ``spin:sqlite/sqlite@3.0.0`` (Spin 3's, which adds
``last-insert-rowid`` and ``changes``), on Python's ``sqlite3``.

Errors as Spin returns them: a label the component is not granted is ``access-denied``; a
statement SQLite refuses (syntax, constraint, more than one statement) is ``io(message)``.
Values map one to one: integer (s64), real (f64), text, blob, null.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from wasmtime.component import ResourceAny, Variant

from devenv.targets.local.spin.state import SqliteFile
from devenv.targets.local.spin.variables import spin_of
from devenv.targets.local.wasi.codec import Case, Err, Ok
from devenv.targets.local.wasi.host import HostContext, Kind, Resource
from devenv.targets.local.wasi.registry import Interface


class Connection(Resource):
    KIND = Kind.SPIN_SQLITE_CONNECTION

    def __init__(self, label: str, db: SqliteFile) -> None:
        self.label = label
        self.db = db
        self.last_insert_rowid = 0
        self.changes = 0


def _open(ctx: HostContext, database: str) -> Any:
    db = spin_of(ctx).sqlite_databases.get(database)
    if db is None:
        ctx.note(
            f"SQLite database `{database}` opened but not granted (access-denied): add it to "
            f"sqlite_databases in [component.{ctx.config.component_id}] in spin.toml"
        )
        return Err(Case("access-denied"))
    return Ok(ctx.own(Connection(database, db)))


def param_value(value: Any) -> Any:
    """A guest ``value`` as sqlite3 takes it. wasmtime-py lifts this variant untagged (each case
    has its own Python class) but a tagged ``Variant`` is accepted too."""
    if isinstance(value, Variant):
        value = value.payload
    if isinstance(value, (bytearray, memoryview, list)):
        return bytes(value)
    return value


def row_value(value: Any) -> Case:
    if value is None:
        return Case("null")
    if isinstance(value, int):
        return Case("integer", value)
    if isinstance(value, float):
        return Case("real", value)
    if isinstance(value, str):
        return Case("text", value)
    return Case("blob", bytes(value))


def _execute(ctx: HostContext, self: ResourceAny, statement: str, parameters: list[Any]) -> Any:
    conn = ctx.borrow(self, Connection)
    params = [param_value(p) for p in parameters]
    try:
        with conn.db.lock:
            db = conn.db.connection()
            cursor = db.execute(statement, params)
            columns = [d[0] for d in cursor.description or ()]
            rows = cursor.fetchall()
            conn.last_insert_rowid = cursor.lastrowid or 0
            conn.changes = max(cursor.rowcount, 0)
    except (sqlite3.Error, OSError, OverflowError) as err:
        return Err(Case("io", str(err)))
    size = sum(len(v) if isinstance(v, (str, bytes)) else 8 for row in rows for v in row)
    ctx.hold(size, f"the rows of a query on SQLite database `{conn.label}`")
    return Ok(
        {
            "columns": columns,
            "rows": [{"values": [row_value(v) for v in row]} for row in rows],
        }
    )


def _last_insert_rowid(ctx: HostContext, self: ResourceAny) -> int:
    return int(ctx.borrow(self, Connection).last_insert_rowid)


def _changes(ctx: HostContext, self: ResourceAny) -> int:
    return int(ctx.borrow(self, Connection).changes)


_FUNCTIONS = {"[static]connection.open": _open, "[method]connection.execute": _execute}

INTERFACES = [
    Interface(
        "fermyon:spin/sqlite@2.0.0",
        resources={"connection": Kind.SPIN_SQLITE_CONNECTION},
        functions=_FUNCTIONS,
    ),
    Interface(
        "spin:sqlite/sqlite@3.0.0",
        resources={"connection": Kind.SPIN_SQLITE_CONNECTION},
        functions={
            **_FUNCTIONS,
            "[method]connection.last-insert-rowid": _last_insert_rowid,
            "[method]connection.changes": _changes,
        },
    ),
]
