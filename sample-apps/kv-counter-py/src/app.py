"""A visit counter: Spin's key-value store keeps the count, Spin variables give the greeting.

GET    /kv-counter-py/          greets, counts this visit, says how many so far
DELETE /kv-counter-py/          resets the count (header `x-admin-token` must match the secret)
"""

from componentize_py_types import Err, Ok
from spin_sdk.wit import exports
from spin_sdk.wit.imports import fermyon_spin_key_value_2_0_0 as key_value
from spin_sdk.wit.imports import fermyon_spin_variables_2_0_0 as variables
from spin_sdk.wit.imports.wasi_http_types_0_2_0 import (
    Fields,
    IncomingRequest,
    Method_Delete,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def respond(response_out: ResponseOutparam, status: int, text: str) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain; charset=utf-8")]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:
        stream.blocking_write_and_flush(text.encode())
    OutgoingBody.finish(body, None)


class WasiHttpIncomingHandler020(exports.WasiHttpIncomingHandler020):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        try:
            with key_value.Store.open("default") as store:
                if isinstance(request.method(), Method_Delete):
                    given = request.headers().get("x-admin-token")
                    if given != [variables.get("admin_token").encode()]:
                        respond(response_out, 403, "wrong or missing x-admin-token\n")
                        return
                    store.delete("visits")
                    respond(response_out, 200, "count reset\n")
                    return
                visits = int(store.get("visits") or b"0") + 1
                store.set("visits", str(visits).encode())
            respond(response_out, 200, f"{variables.get('greeting')} number {visits}\n")
        except Err as err:  # a host API error (e.g. the store is not granted): say which
            respond(response_out, 500, f"host error: {err.value!r}\n")
