"""The SDK's own high-level API (spin_sdk.http, key_value, variables), as the Spin 3 examples
use it. (spin-sdk 3.4.1's spin_sdk.sqlite does not import under componentize-py 0.17.2: "No
module named 'spin_sdk.wit.imports.sqlite'", the upstream example fails the same way.)"""

import json

from spin_sdk import http, key_value, variables
from spin_sdk.http import Request, Response
from spin_sdk.wit.imports import spin_postgres_postgres_3_0_0 as pg


class IncomingHandler(http.IncomingHandler):
    def handle_request(self, request: Request) -> Response:
        path = request.uri.split("?", 1)[0]
        if path == "/var":
            return Response(200, {"content-type": "text/plain"}, variables.get("message").encode())
        if path == "/kv":
            with key_value.open_default() as store:
                if request.method == "PUT":
                    store.set("k", request.body or b"")
                value = store.get("k")
            return Response(200 if value is not None else 404, {}, value or b"")
        if path == "/pg":  # spin:postgres/postgres@3.0.0, its date and time types
            conn = pg.Connection.open((request.body or b"").decode())
            conn.execute("CREATE TEMP TABLE t (d DATE, tm TIME, dt TIMESTAMP, s TEXT)", [])
            params = [
                pg.ParameterValue_Date((2026, 12, 4)),
                pg.ParameterValue_Time((5, 6, 7, 8000)),
                pg.ParameterValue_Datetime((2026, 12, 4, 5, 6, 7, 0)),
                pg.ParameterValue_Str("x"),
            ]
            changed = conn.execute("INSERT INTO t VALUES ($1, $2, $3, $4)", params)
            rows = conn.query("SELECT d, tm, dt, s FROM t", [])
            out = {
                "changed": changed,
                "columns": [[c.name, c.data_type.name] for c in rows.columns],
                "rows": [[[type(v).__name__, getattr(v, "value", None)] for v in row] for row in rows.rows],
            }
            return Response(200, {"content-type": "application/json"}, json.dumps(out).encode())
        return Response(404, {}, b"no such route")
