"""Asks Spin's LLM for an answer per request (fermyon:spin/llm@2.0.0)."""

from componentize_py_types import Ok
from spin_sdk.wit import exports
from spin_sdk.wit.imports import fermyon_spin_llm_2_0_0 as llm
from spin_sdk.wit.imports.wasi_http_types_0_2_0 import (
    Fields,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class WasiHttpIncomingHandler020(exports.WasiHttpIncomingHandler020):
    def handle(self, request, response_out: ResponseOutparam) -> None:
        result = llm.infer("llama2-chat", "Say hello", None)
        response = OutgoingResponse(Fields())
        response.set_status_code(200)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(result.text.encode())
        OutgoingBody.finish(body, None)
