"""Outbound Redis (``fermyon:spin/redis@2.0.0``, with redis-py) and PostgreSQL
(``fermyon:spin/postgres@2.0.0`` and Spin 3's ``spin:postgres/postgres@3.0.0``, which adds dates
and times, with psycopg), only to ``allowed_outbound_hosts``.

As Spin does, an address is checked against the component's ``allowed_outbound_hosts`` with its
scheme (``redis://host[:port]``, ``postgres://host[:port]``; a missing port is the scheme's
well-known one): a denied Redis address is ``invalid-address``, a denied PostgreSQL one
``connection-failed``, each with a log line naming the address and the key to change.
Connections live for one request (closed when it ends, even if the guest never dropped them),
and every network wait is bounded by the request's deadline.

Redis simple-string replies (``+OK``) come back from redis-py as bytes, so ``execute`` returns
them as ``binary``, where Spin returns ``status``; the typed functions (get, set, incr, ...)
match Spin.

The clients (redis-py, psycopg; mysql-connector and paho-mqtt in their own modules) are imported
when a component first opens a connection: most apps never do, and loaded together they cost some
40 MB in wasmdev and in every serving process.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from wasmtime.component import ResourceAny, Variant

from devenv.targets.local.spin.outbound import deny, remaining
from devenv.targets.local.wasi.codec import Case, Err, Ok
from devenv.targets.local.wasi.host import HostContext, Kind, Resource
from devenv.targets.local.wasi.outgoing import allowed
from devenv.targets.local.wasi.registry import Interface

if TYPE_CHECKING:  # the clients load on first use: see the module's docstring
    import psycopg
    import redis

# -- Redis ---------------------------------------------------------------------------------------


class RedisConnection(Resource):
    KIND = Kind.SPIN_REDIS_CONNECTION

    def __init__(self, client: redis.Redis) -> None:
        self.client = client


def _redis_open(ctx: HostContext, address: str) -> Any:
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        return Err(Case("invalid-address"))
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        return Err(Case("invalid-address"))
    if not allowed(ctx.config.allowed_outbound_hosts, parts.scheme, parts.hostname, port):
        deny(ctx, "Redis", parts.scheme, parts.hostname, port)
        return Err(Case("invalid-address"))
    timeout = remaining(ctx)
    try:
        import redis

        client = redis.Redis.from_url(address, socket_timeout=timeout, socket_connect_timeout=timeout)
    except ValueError:
        return Err(Case("invalid-address"))
    ctx.closers.append(client.close)
    return Ok(ctx.own(RedisConnection(client)))


def _redis_call(ctx: HostContext, self: ResourceAny, op: Any) -> Any:
    import redis

    client = ctx.borrow(self, RedisConnection).client
    try:
        return Ok(op(client))
    except redis.ResponseError as err:
        if "WRONGTYPE" in str(err) or "not an integer" in str(err):
            return Err(Case("type-error"))
        return Err(Case("other", str(err)))
    except redis.RedisError as err:
        return Err(Case("other", f"{type(err).__name__}: {err}"))


def _redis_param(value: Any) -> Any:
    return value.payload if isinstance(value, Variant) else value


def _redis_result(value: Any) -> list[Case]:
    if isinstance(value, list):
        return [r for item in value for r in _redis_result(item)]
    if value is None:
        return [Case("nil")]
    if isinstance(value, bool):
        return [Case("int64", int(value))]
    if isinstance(value, int):
        return [Case("int64", value)]
    if isinstance(value, str):
        return [Case("status", value)]
    return [Case("binary", bytes(value))]


def _execute_raw(client: redis.Redis, command: str, args: list[Any]) -> Any:
    conn = client.connection_pool.get_connection()
    try:
        conn.send_command(command, *args)
        return conn.read_response()
    finally:
        client.connection_pool.release(conn)


REDIS_FUNCTIONS = {
    "[static]connection.open": _redis_open,
    "[method]connection.publish": lambda ctx, self, channel, payload: _redis_call(
        ctx, self, lambda c: c.publish(channel, bytes(payload)) and None
    ),
    "[method]connection.get": lambda ctx, self, key: _redis_call(ctx, self, lambda c: c.get(key)),
    "[method]connection.set": lambda ctx, self, key, value: _redis_call(
        ctx, self, lambda c: c.set(key, bytes(value)) and None
    ),
    "[method]connection.incr": lambda ctx, self, key: _redis_call(ctx, self, lambda c: int(c.incr(key))),
    "[method]connection.del": lambda ctx, self, keys: _redis_call(ctx, self, lambda c: int(c.delete(*keys))),
    "[method]connection.sadd": lambda ctx, self, key, values: _redis_call(
        ctx, self, lambda c: int(c.sadd(key, *values))
    ),
    "[method]connection.smembers": lambda ctx, self, key: _redis_call(
        ctx, self, lambda c: sorted(m.decode("utf-8", errors="replace") for m in c.smembers(key))
    ),
    "[method]connection.srem": lambda ctx, self, key, values: _redis_call(
        ctx, self, lambda c: int(c.srem(key, *values))
    ),
    "[method]connection.execute": lambda ctx, self, command, args: _redis_call(
        ctx, self, lambda c: _redis_result(_execute_raw(c, command, [_redis_param(a) for a in args]))
    ),
}


# -- PostgreSQL ----------------------------------------------------------------------------------

# PostgreSQL type oids -> rdbms-types db-data-type
_PG_TYPES = {
    16: "boolean",
    21: "int16",
    23: "int32",
    20: "int64",
    700: "floating32",
    701: "floating64",
    25: "str",
    1043: "str",
    1042: "str",
    19: "str",
    17: "binary",
}


class PgConnection(Resource):
    KIND = Kind.SPIN_PG_CONNECTION

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn


def _pg_target(address: str) -> tuple[str, int | None] | None:
    """(host, port) of a URL or a ``key=value`` connection string, as the allow-list sees it."""
    if "://" in address:
        try:
            parts = urlsplit(address)
            return (parts.hostname or "", parts.port)
        except ValueError:
            return None
    fields = dict(p.split("=", 1) for p in address.split() if "=" in p)
    port = fields.get("port")
    return (fields.get("host", ""), int(port) if port and port.isdigit() else None)


def _pg_open(ctx: HostContext, address: str) -> Any:
    target = _pg_target(address)
    if target is None or not target[0]:
        return Err(Case("connection-failed", f"invalid PostgreSQL address {address!r}"))
    host, port = target
    if not allowed(ctx.config.allowed_outbound_hosts, "postgres", host, port):
        deny(ctx, "PostgreSQL", "postgres", host, port)
        return Err(Case("connection-failed", f"address postgres://{host} is not permitted"))
    import psycopg

    try:
        conn = psycopg.connect(
            address,
            autocommit=True,
            connect_timeout=max(1, int(remaining(ctx))),
            cursor_factory=psycopg.RawCursor,  # Spin's statements use $1, $2 placeholders
        )
    except psycopg.Error as err:
        return Err(Case("connection-failed", str(err).strip()))
    ctx.closers.append(conn.close)
    return Ok(ctx.own(PgConnection(conn)))


# spin:postgres@3.0.0 adds dates and times (and drops the unsigned types)
_PG3_TYPES = {**_PG_TYPES, 1082: "date", 1083: "time", 1114: "datetime", 1184: "timestamp"}


def _pg_param(value: Any) -> Any:
    if not isinstance(value, Variant):
        return value
    tag, payload = value.tag, value.payload
    if tag == "binary":
        return bytes(payload)
    if tag == "date":
        return datetime.date(*payload)
    if tag == "time":
        h, m, sec, ns = payload
        return datetime.time(h, m, sec, ns // 1000)
    if tag == "datetime":
        y, mo, d, h, m, sec, ns = payload
        return datetime.datetime(y, mo, d, h, m, sec, ns // 1000)
    if tag == "timestamp":
        return datetime.datetime.fromtimestamp(payload, datetime.UTC)
    return payload


def _pg_value(value: Any, kind: str) -> Case:
    if value is None:
        return Case("db-null")
    if kind == "other":
        return Case("unsupported")
    if kind == "binary":
        return Case("binary", bytes(value))
    if kind == "date":
        return Case("date", (value.year, value.month, value.day))
    if kind == "time":
        return Case("time", (value.hour, value.minute, value.second, value.microsecond * 1000))
    if kind == "datetime":
        return Case(
            "datetime",
            (
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond * 1000,
            ),
        )
    if kind == "timestamp":
        return Case("timestamp", int(value.timestamp()))
    return Case(kind, value)


def _pg_run(
    ctx: HostContext,
    self: ResourceAny,
    statement: str,
    params: list[Any],
    query: bool,
    types: dict[int, str] = _PG_TYPES,
) -> Any:
    import psycopg

    conn = ctx.borrow(self, PgConnection).conn
    try:
        conn.execute(f"SET statement_timeout = {max(1, int(remaining(ctx) * 1000))}")
        cursor = conn.execute(statement, [_pg_param(p) for p in params])
        if not query:
            return Ok(max(cursor.rowcount, 0))
        kinds = [types.get(d.type_code, "other") for d in cursor.description or ()]
        names = [d.name for d in cursor.description or ()]
        rows = cursor.fetchall() if cursor.description else []
    except psycopg.Error as err:
        return Err(Case("query-failed", str(err).strip()))
    return Ok(
        {
            "columns": [{"name": n, "data-type": k} for n, k in zip(names, kinds, strict=True)],
            "rows": [[_pg_value(v, k) for v, k in zip(row, kinds, strict=True)] for row in rows],
        }
    )


PG_FUNCTIONS = {
    "[static]connection.open": _pg_open,
    "[method]connection.query": lambda ctx, self, statement, params: _pg_run(
        ctx, self, statement, params, True
    ),
    "[method]connection.execute": lambda ctx, self, statement, params: _pg_run(
        ctx, self, statement, params, False
    ),
}

PG3_FUNCTIONS = {
    "[static]connection.open": _pg_open,
    "[method]connection.query": lambda ctx, self, statement, params: _pg_run(
        ctx, self, statement, params, True, _PG3_TYPES
    ),
    "[method]connection.execute": lambda ctx, self, statement, params: _pg_run(
        ctx, self, statement, params, False, _PG3_TYPES
    ),
}

INTERFACES = [
    Interface(
        "fermyon:spin/redis@2.0.0",
        resources={"connection": Kind.SPIN_REDIS_CONNECTION},
        functions=REDIS_FUNCTIONS,
    ),
    Interface(
        "fermyon:spin/postgres@2.0.0",
        resources={"connection": Kind.SPIN_PG_CONNECTION},
        functions=PG_FUNCTIONS,
    ),
    Interface(
        "spin:postgres/postgres@3.0.0",
        resources={"connection": Kind.SPIN_PG_CONNECTION},
        functions=PG3_FUNCTIONS,
    ),
]
