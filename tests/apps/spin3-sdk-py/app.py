"""The SDK's own high-level API (spin_sdk.http, key_value, variables), as the Spin 3 examples
use it. (spin-sdk 3.4.1's spin_sdk.sqlite does not import under componentize-py 0.17.2: "No
module named 'spin_sdk.wit.imports.sqlite'", the upstream example fails the same way.)"""

from spin_sdk import http, key_value, variables
from spin_sdk.http import Request, Response


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
        return Response(404, {}, b"no such route")
