"""Hello from Python on wasi:http 0.2 (Spin 2/3's world): one GET, one short text response."""

import os

from componentize_py_types import Ok
from spin_sdk.wit import exports
from spin_sdk.wit.imports.wasi_http_types_0_2_0 import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class WasiHttpIncomingHandler020(exports.WasiHttpIncomingHandler020):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        greeting = os.environ.get("GREETING", "Hello")
        text = f"{greeting} from hello-py at {request.path_with_query() or '/'}\n".encode()
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain; charset=utf-8")]))
        response.set_status_code(200)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(text)
        OutgoingBody.finish(body, None)
