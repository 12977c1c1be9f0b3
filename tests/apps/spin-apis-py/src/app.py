"""Calls Spin's 2.0 host APIs through spin-sdk's generated bindings and answers in JSON.

GET  /plain                 a plain answer (the bench's baseline)
GET  /var/NAME              fermyon:spin/variables get
GET  /kv/STORE/KEY          key-value get (404 when absent)
PUT  /kv/STORE/KEY          key-value set (the request body, byte-exact)
DELETE /kv/STORE/KEY        key-value delete
GET  /kv/STORE              key-value get-keys
POST /sql/DB                SQLite execute: body {"sql": ..., "params": [[type, value], ...]}
GET  /self/PATH             outbound HTTP to a relative URL (this app, via `self`)
POST /redis                 {"address", "set": [key, hex], "get": key, "incr": key, "execute": [cmd, arg...]}
POST /pg                    {"address", "execute": sql, "query": sql, "params": [[type, value], ...]}
POST /mysql                 the same for fermyon:spin/mysql@2.0.0 (``?`` placeholders)
POST /mqtt                  {"address", "username", "password", "topic", "payload": hex, "qos": 0|1|2}
Errors from the host come back as 500 {"error": "<ErrorClassName>", "detail": ...}.
"""

import json

from componentize_py_types import Err, Ok
from spin_sdk.wit import exports
from spin_sdk.wit.imports import fermyon_spin_key_value_2_0_0 as kv
from spin_sdk.wit.imports import fermyon_spin_mqtt_2_0_0 as mqtt
from spin_sdk.wit.imports import fermyon_spin_mysql_2_0_0 as mysql
from spin_sdk.wit.imports import fermyon_spin_postgres_2_0_0 as postgres
from spin_sdk.wit.imports import fermyon_spin_rdbms_types_2_0_0 as rdbms
from spin_sdk.wit.imports import fermyon_spin_redis_2_0_0 as redis
from spin_sdk.wit.imports import fermyon_spin_sqlite_2_0_0 as sqlite
from spin_sdk.wit.imports import fermyon_spin_variables_2_0_0 as variables
from spin_sdk.wit.imports import wasi_http_outgoing_handler_0_2_0 as outgoing
from spin_sdk.wit.imports.wasi_http_types_0_2_0 import (
    Fields,
    IncomingBody,
    IncomingRequest,
    Method_Delete,
    Method_Get,
    Method_Post,
    Method_Put,
    OutgoingBody,
    OutgoingRequest,
    OutgoingResponse,
    ResponseOutparam,
)


def read_body(request: IncomingRequest) -> bytes:
    body = request.consume()
    stream = body.stream()
    data = b""
    while True:
        try:
            chunk = stream.blocking_read(65536)
        except Err:
            break
        data += chunk
    stream.__exit__(None, None, None)
    IncomingBody.finish(body)
    return data


def respond(
    response_out: ResponseOutparam, status: int, data: bytes, ctype: str = "application/json"
) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", ctype.encode())]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:
        offset = 0
        while offset < len(data):
            stream.blocking_write_and_flush(data[offset : offset + 4096])
            offset += 4096
    OutgoingBody.finish(body, None)


def to_value(pair):
    kind, value = pair
    if kind == "int":
        return sqlite.Value_Integer(value)
    if kind == "real":
        return sqlite.Value_Real(value)
    if kind == "text":
        return sqlite.Value_Text(value)
    if kind == "blob":
        return sqlite.Value_Blob(bytes.fromhex(value))
    return sqlite.Value_Null()


def from_value(value):
    if isinstance(value, sqlite.Value_Integer):
        return ["int", value.value]
    if isinstance(value, sqlite.Value_Real):
        return ["real", value.value]
    if isinstance(value, sqlite.Value_Text):
        return ["text", value.value]
    if isinstance(value, sqlite.Value_Blob):
        return ["blob", bytes(value.value).hex()]
    return ["null", None]


def redis_ops(query):
    conn = redis.Connection.open(query["address"])
    out = {}
    if "set" in query:
        conn.set(query["set"][0], bytes.fromhex(query["set"][1]))
    if "get" in query:
        value = conn.get(query["get"])
        out["get"] = None if value is None else bytes(value).hex()
    if "incr" in query:
        out["incr"] = conn.incr(query["incr"])
    if "execute" in query:
        command, *args = query["execute"]
        params = [
            redis.RedisParameter_Int64(a) if isinstance(a, int) else redis.RedisParameter_Binary(a.encode())
            for a in args
        ]
        out["execute"] = [
            [type(r).__name__, r.value.hex() if isinstance(r.value, bytes) else r.value]
            if hasattr(r, "value")
            else [type(r).__name__, None]
            for r in conn.execute(command, params)
        ]
    return out


def pg_param(pair):
    kind, value = pair
    if kind == "int32":
        return rdbms.ParameterValue_Int32(value)
    if kind == "int64":
        return rdbms.ParameterValue_Int64(value)
    if kind == "uint32":
        return rdbms.ParameterValue_Uint32(value)
    if kind == "str":
        return rdbms.ParameterValue_Str(value)
    if kind == "bool":
        return rdbms.ParameterValue_Boolean(value)
    if kind == "float64":
        return rdbms.ParameterValue_Floating64(value)
    if kind == "binary":
        return rdbms.ParameterValue_Binary(bytes.fromhex(value))
    return rdbms.ParameterValue_DbNull()


def pg_value(value):
    name = type(value).__name__.removeprefix("DbValue_")
    payload = getattr(value, "value", None)
    return [name, bytes(payload).hex() if isinstance(payload, bytes) else payload]


def rdbms_ops(query, db=postgres):
    conn = db.Connection.open(query["address"])
    params = [pg_param(p) for p in query.get("params", [])]
    out = {}
    if "execute" in query:
        out["execute"] = conn.execute(query["execute"], params)
    if "query" in query:
        rows = conn.query(query["query"], params)
        out["columns"] = [[c.name, c.data_type.name] for c in rows.columns]
        out["rows"] = [[pg_value(v) for v in row] for row in rows.rows]
    return out


def mqtt_publish(query):
    conn = mqtt.Connection.open(query["address"], query.get("username", ""), query.get("password", ""), 30)
    qos = [mqtt.Qos.AT_MOST_ONCE, mqtt.Qos.AT_LEAST_ONCE, mqtt.Qos.EXACTLY_ONCE][query.get("qos", 1)]
    conn.publish(query["topic"], bytes.fromhex(query["payload"]), qos)
    return {"published": True}


def error_json(err: Err) -> bytes:
    value = err.value
    detail = getattr(value, "value", None)
    return json.dumps({"error": type(value).__name__, "detail": detail}).encode()


def fetch_self(path: str) -> bytes:
    request = OutgoingRequest(Fields())
    request.set_path_with_query(path)
    future = outgoing.handle(request, None)
    pollable = future.subscribe()
    pollable.block()
    result = future.get()
    response = result.value.value
    body = response.consume()
    stream = body.stream()
    data = b""
    while True:
        try:
            data += stream.blocking_read(65536)
        except Err:
            break
    return str(response.status()).encode() + b" " + data


class WasiHttpIncomingHandler020(exports.WasiHttpIncomingHandler020):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method = request.method()
        path = (request.path_with_query() or "/").split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        try:
            if parts == ["plain"]:
                respond(response_out, 200, b"plain", "text/plain")
            elif len(parts) == 2 and parts[0] == "var":
                respond(response_out, 200, variables.get(parts[1]).encode(), "text/plain")
            elif parts and parts[0] == "kv" and len(parts) == 2:
                with kv.Store.open(parts[1]) as store:
                    respond(response_out, 200, json.dumps(sorted(store.get_keys())).encode())
            elif parts and parts[0] == "kv" and len(parts) == 3:
                store = kv.Store.open(parts[1])
                key = parts[2]
                if isinstance(method, Method_Put):
                    store.set(key, read_body(request))
                    respond(response_out, 204, b"")
                elif isinstance(method, Method_Delete):
                    store.delete(key)
                    respond(response_out, 204, b"")
                else:
                    value = store.get(key)
                    if value is None:
                        respond(response_out, 404, b"", "application/octet-stream")
                    else:
                        respond(response_out, 200, value, "application/octet-stream")
            elif len(parts) == 2 and parts[0] == "sql" and isinstance(method, Method_Post):
                query = json.loads(read_body(request))
                with sqlite.Connection.open(parts[1]) as conn:
                    result = conn.execute(query["sql"], [to_value(p) for p in query.get("params", [])])
                rows = [[from_value(v) for v in row.values] for row in result.rows]
                respond(response_out, 200, json.dumps({"columns": result.columns, "rows": rows}).encode())
            elif parts == ["redis"] and isinstance(method, Method_Post):
                respond(response_out, 200, json.dumps(redis_ops(json.loads(read_body(request)))).encode())
            elif parts == ["pg"] and isinstance(method, Method_Post):
                respond(response_out, 200, json.dumps(rdbms_ops(json.loads(read_body(request)))).encode())
            elif parts == ["mqtt"] and isinstance(method, Method_Post):
                respond(response_out, 200, json.dumps(mqtt_publish(json.loads(read_body(request)))).encode())
            elif parts == ["mysql"] and isinstance(method, Method_Post):
                respond(response_out, 200, json.dumps(rdbms_ops(json.loads(read_body(request)), mysql)).encode())
            elif parts and parts[0] == "self" and isinstance(method, Method_Get):
                respond(response_out, 200, fetch_self("/" + "/".join(parts[1:])), "text/plain")
            else:
                respond(response_out, 404, b"no such route", "text/plain")
        except Err as err:
            respond(response_out, 500, error_json(err))
