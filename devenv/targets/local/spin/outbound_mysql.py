"""Outbound MySQL (``fermyon:spin/mysql@2.0.0``, with Oracle's mysql-connector-python), only to
``allowed_outbound_hosts`` (``mysql://host[:port]``, 3306 when none is named).

Faithful to Spin's host (crates/factor-outbound-mysql): statements are server-side prepared with
``?`` placeholders; a column's type comes from its MySQL type and flags (signed or not, binary or
text) exactly as Spin maps them, so TEXT is ``str``, BLOB and VARBINARY ``binary``, TINYINT
``int8``, an UNSIGNED INT ``uint32``; a column Spin cannot map (DATE, DECIMAL, ...) is ``other``,
and a non-null value in it fails the query with ``value-conversion-failed``, as in Spin. An
address not allowed, or one that cannot be reached, is ``connection-failed``. ``?ssl-mode=`` is
honoured as Spin does (anything but ``disabled`` asks for TLS). Connections live for one
request, and every wait is bounded by the request's deadline.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from wasmtime.component import ResourceAny, Variant

from devenv.targets.local.spin.outbound import deny, remaining
from devenv.targets.local.wasi.codec import Case, Err, Ok
from devenv.targets.local.wasi.host import HostContext, Kind, Resource
from devenv.targets.local.wasi.outgoing import allowed
from devenv.targets.local.wasi.registry import Interface

__all__ = ["INTERFACES"]

DEFAULT_PORT = 3306


@functools.cache
def _numeric() -> dict[tuple[int, bool], str]:
    """(MySQL column type, signed) -> Spin's db-data-type, for the numeric types Spin maps."""
    from mysql.connector.constants import FieldType

    return {
        (FieldType.DOUBLE, True): "floating64",
        (FieldType.DOUBLE, False): "floating64",
        (FieldType.FLOAT, True): "floating32",
        (FieldType.FLOAT, False): "floating32",
        (FieldType.INT24, True): "int32",
        (FieldType.INT24, False): "uint32",
        (FieldType.LONG, True): "int32",
        (FieldType.LONG, False): "uint32",
        (FieldType.LONGLONG, True): "int64",
        (FieldType.LONGLONG, False): "uint64",
        (FieldType.SHORT, True): "int16",
        (FieldType.SHORT, False): "uint16",
        (FieldType.TINY, True): "int8",
        (FieldType.TINY, False): "uint8",
    }


def _character_type(type_code: int, binary: bool) -> str:
    from mysql.connector.constants import FieldType

    if type_code == FieldType.BLOB:
        return "binary" if binary else "str"  # TEXT is a BLOB without the binary flag
    if type_code in (FieldType.LONG_BLOB, FieldType.MEDIUM_BLOB):
        return "binary"
    if type_code in (FieldType.STRING, FieldType.VAR_STRING):
        return "binary" if binary else "str"  # BINARY / VARBINARY have the flag
    return "other"


def column_type(type_code: int, flags: int) -> str:
    """Spin's db-data-type for a MySQL column."""
    from mysql.connector.constants import FieldFlag

    signed = not flags & FieldFlag.UNSIGNED
    numeric = _numeric().get((type_code, signed))
    if numeric is not None:
        return numeric
    return _character_type(type_code, bool(flags & FieldFlag.BINARY))


class MysqlConnection(Resource):
    KIND = Kind.SPIN_MYSQL_CONNECTION

    def __init__(self, conn: Any) -> None:
        self.conn = conn


def _open(ctx: HostContext, address: str) -> Any:
    import mysql.connector  # on first use (outbound_db.py says why)

    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        return Err(Case("connection-failed", f"invalid MySQL address {address!r}"))
    if parts.scheme != "mysql" or not parts.hostname:
        return Err(
            Case("connection-failed", f"invalid MySQL address {address!r}: use mysql://user:password@host/db")
        )
    if not allowed(ctx.config.allowed_outbound_hosts, "mysql", parts.hostname, port):
        deny(ctx, "MySQL", "mysql", parts.hostname, port)
        return Err(Case("connection-failed", f"address {address} is not permitted"))
    query = dict(parse_qsl(parts.query))
    ssl_mode = next((v for k, v in query.items() if k.lower() in ("ssl-mode", "sslmode")), "disabled")
    timeout = max(1, int(remaining(ctx)))
    try:
        conn = mysql.connector.connect(
            host=parts.hostname,
            port=port or DEFAULT_PORT,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            database=unquote(parts.path.lstrip("/")) or None,
            autocommit=True,
            connection_timeout=timeout,
            read_timeout=timeout,
            write_timeout=timeout,
            ssl_disabled=ssl_mode.lower() == "disabled",
        )
    except mysql.connector.Error as err:
        return Err(Case("connection-failed", str(err)))
    ctx.closers.append(conn.close)
    return Ok(ctx.own(MysqlConnection(conn)))


def _param(value: Any) -> Any:
    if not isinstance(value, Variant):
        return value
    if value.tag == "binary":
        return bytes(value.payload)
    return value.payload  # db-null carries None


def _value(value: Any, kind: str, column: str) -> Case:
    if value is None:
        return Case("db-null")
    if kind == "other":
        raise _Unconvertible(f"Cannot convert value {value!r} in column {column} data type Other")
    if kind == "binary":
        return Case("binary", bytes(value))
    if kind == "str" and isinstance(value, bytes | bytearray):
        return Case("str", bytes(value).decode("utf-8", errors="replace"))
    return Case(kind, value)


class _Unconvertible(Exception):
    pass


def _run(ctx: HostContext, self: ResourceAny, statement: str, params: list[Any], query: bool) -> Any:
    import mysql.connector

    conn = ctx.borrow(self, MysqlConnection).conn
    try:
        cursor = conn.cursor(prepared=True)
        try:
            cursor.execute(statement, [_param(p) for p in params])
            if not query:
                if cursor.with_rows:
                    cursor.fetchall()  # a statement that returned rows anyway: drained, as Spin does
                return Ok(None)
            described = cursor.description or ()
            kinds = [column_type(d[1], d[7]) for d in described]
            names = [d[0] for d in described]
            rows = cursor.fetchall() if described else []
        finally:
            cursor.close()
    except mysql.connector.Error as err:
        return Err(Case("query-failed", str(err)))
    try:
        converted = [[_value(v, k, n) for v, k, n in zip(row, kinds, names, strict=True)] for row in rows]
    except _Unconvertible as err:
        return Err(Case("value-conversion-failed", str(err)))
    return Ok(
        {
            "columns": [{"name": n, "data-type": k} for n, k in zip(names, kinds, strict=True)],
            "rows": converted,
        }
    )


FUNCTIONS = {
    "[static]connection.open": _open,
    "[method]connection.query": lambda ctx, self, statement, params: _run(ctx, self, statement, params, True),
    "[method]connection.execute": lambda ctx, self, statement, params: _run(
        ctx, self, statement, params, False
    ),
}

INTERFACES = [
    Interface(
        "fermyon:spin/mysql@2.0.0", resources={"connection": Kind.SPIN_MYSQL_CONNECTION}, functions=FUNCTIONS
    ),
]
