"""Spin 3's interfaces from Python, world spin:up/http-trigger@3.4.0; answers JSON.

GET /config/NAME      wasi:config/store get (null when undefined)
GET /config           wasi:config/store get-all
PUT /kv/STORE/KEY     wasi:keyvalue/store set, then GET reads it back
GET /kv/STORE/KEY     wasi:keyvalue/store get
GET /kv/STORE         list-keys
POST /incr/KEY        wasi:keyvalue/atomics increment by 5
POST /batch           wasi:keyvalue/batch set-many a,b then get-many a,b,c
POST /sql             spin:sqlite@3.0.0: create, insert, last-insert-rowid, changes
POST /cas             wasi:keyvalue/atomics compare-and-swap: one that holds, one that loses a race
"""

import json

from componentize_py_types import Err, Ok
from spin_sdk.wit import exports
from spin_sdk.wit.imports import spin_sqlite_sqlite_3_0_0 as sqlite
from spin_sdk.wit.imports import wasi_config_store_0_2_0_draft_2024_09_27 as config
from spin_sdk.wit.imports import wasi_keyvalue_atomics_0_2_0_draft2 as atomics
from spin_sdk.wit.imports import wasi_keyvalue_batch_0_2_0_draft2 as batch
from spin_sdk.wit.imports import wasi_keyvalue_store_0_2_0_draft2 as store
from spin_sdk.wit.imports.wasi_http_types_0_2_0 import (
    Fields,
    IncomingBody,
    IncomingRequest,
    Method_Put,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def read_body(request: IncomingRequest) -> bytes:
    body = request.consume()
    stream = body.stream()
    data = b""
    while True:
        try:
            data += stream.blocking_read(65536)
        except Err:
            break
    stream.__exit__(None, None, None)
    IncomingBody.finish(body)
    return data


def respond(response_out: ResponseOutparam, status: int, data: bytes) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", b"application/json")]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:
        stream.blocking_write_and_flush(data)
    OutgoingBody.finish(body, None)


def handle(request: IncomingRequest):
    method = request.method()
    parts = [p for p in (request.path_with_query() or "/").split("?", 1)[0].split("/") if p]
    if parts == ["config"]:
        return config.get_all()
    if len(parts) == 2 and parts[0] == "config":
        return config.get(parts[1])
    if len(parts) == 2 and parts[0] == "kv":
        return store.open(parts[1]).list_keys(None).keys
    if len(parts) == 3 and parts[0] == "kv":
        bucket = store.open(parts[1])
        if isinstance(method, Method_Put):
            bucket.set(parts[2], read_body(request))
        value = bucket.get(parts[2])
        return None if value is None else bytes(value).hex()
    if len(parts) == 2 and parts[0] == "incr":
        return atomics.increment(store.open("default"), parts[1], 5)
    if parts == ["batch"]:
        bucket = store.open("default")
        batch.set_many(bucket, [("a", b"1"), ("b", b"2")])
        return [[k, None if v is None else bytes(v).decode()] for k, v in batch.get_many(bucket, ["a", "b", "c"])]
    if parts == ["cas"]:
        bucket = store.open("default")
        bucket.set("c", b"old")
        won = atomics.Cas.new(bucket, "c")
        seen = bytes(won.current()).decode()
        atomics.swap(won, b"new")
        lost = atomics.Cas.new(bucket, "c")
        bucket.set("c", b"changed meanwhile")
        try:
            atomics.swap(lost, b"never")
            outcome = "swapped"
        except Err as err:
            outcome = type(err.value).__name__
        return {"seen": seen, "second": outcome, "now": bytes(bucket.get("c")).decode()}
    if parts == ["sql"]:
        conn = sqlite.Connection.open("default")
        conn.execute("CREATE TABLE IF NOT EXISTS t (s TEXT)", [])
        conn.execute("INSERT INTO t VALUES (?), (?)", [sqlite.Value_Text("x"), sqlite.Value_Text("y")])
        return {"rowid": conn.last_insert_rowid(), "changes": conn.changes()}
    return "no such route"


class WasiHttpIncomingHandler020(exports.WasiHttpIncomingHandler020):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        try:
            respond(response_out, 200, json.dumps(handle(request)).encode())
        except Err as err:
            respond(response_out, 500, json.dumps({"error": type(err.value).__name__}).encode())
