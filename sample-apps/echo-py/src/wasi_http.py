"""Small helpers over the raw wasi:http 0.2 bindings: read a whole body, send a whole response.

Bodies move through check-write / write in the sizes the host permits, so any size works.
"""

from componentize_py_types import Err, Ok
from spin_sdk.wit.imports.wasi_http_types_0_2_0 import (
    Fields,
    IncomingBody,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from spin_sdk.wit.imports.wasi_io_streams_0_2_0 import OutputStream, StreamError_Closed


def read_body(request: IncomingRequest) -> bytes:
    body = request.consume()
    chunks = []
    with body.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(1 << 20))
            except Err as err:
                if isinstance(err.value, StreamError_Closed):
                    break
                raise
    IncomingBody.finish(body)
    return b"".join(chunks)


def write_all(stream: OutputStream, data: bytes) -> None:
    view = memoryview(data)
    while view:
        permitted = stream.check_write()
        if permitted == 0:
            with stream.subscribe() as ready:
                ready.block()
            continue
        stream.write(bytes(view[:permitted]))
        view = view[permitted:]
    stream.blocking_flush()


def start_response(response_out: ResponseOutparam, status: int, headers: list[tuple[str, str]]) -> OutgoingBody:
    response = OutgoingResponse(Fields.from_list([(k, v.encode()) for k, v in headers]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    return body


def send(response_out: ResponseOutparam, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
    body = start_response(response_out, status, headers)
    with body.write() as stream:
        write_all(stream, data)
    OutgoingBody.finish(body, None)
