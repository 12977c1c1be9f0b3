"""The server side of wasi:http/types 0.2: fields, the incoming request and its body, the
outgoing response and its body, response-outparam, and future-trailers.

libwasmtime gives no way to create an ``incoming-request`` or ``response-outparam`` from outside,
so these resources are Python objects. Bodies are in memory: the server has the whole request
before it calls the guest, and it sends the response after the guest returns; streams still move
them in ``io.MAX_CHUNK`` pieces. The client side (outgoing-request, incoming-response) is in
outgoing.py.
"""

from __future__ import annotations

import re
from typing import Any

from wasmtime.component import ResourceAny

from devenv.targets.local.executor import GuestRequest
from devenv.targets.local.wasi.codec import Case, Err, Ok
from devenv.targets.local.wasi.host import HostContext, Kind, Resource
from devenv.targets.local.wasi.io import BufferSink, InputStream, OutputStream, Pollable
from devenv.targets.local.wasi.registry import Interface

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(rb"[\r\n\0]")

INVALID_SYNTAX = Case("invalid-syntax")
IMMUTABLE = Case("immutable")

_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}


class Fields(Resource):
    """Headers or trailers: ordered (name, value) pairs, names compared case-insensitively."""

    KIND = Kind.FIELDS

    def __init__(self, entries: list[tuple[str, bytes]] | None = None, mutable: bool = True) -> None:
        self.entries = entries if entries is not None else []
        self.mutable = mutable

    def get(self, name: str) -> list[bytes]:
        key = name.lower()
        return [v for n, v in self.entries if n.lower() == key]

    def copy(self, mutable: bool) -> Fields:
        return Fields(list(self.entries), mutable)


def valid_field(name: str, value: bytes | None = None) -> bool:
    if not _TOKEN.match(name.encode("utf-8", errors="replace")):
        return False
    return value is None or not _BAD_VALUE.search(value)


class IncomingBody(Resource):
    KIND = Kind.INCOMING_BODY

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.stream_taken = False


class IncomingRequest(Resource):
    KIND = Kind.INCOMING_REQUEST

    def __init__(self, request: GuestRequest) -> None:
        self.method = request.method.upper()
        self.path_with_query = request.path + (f"?{request.query}" if request.query else "")
        self.scheme = request.scheme
        authority = next((v for n, v in request.headers if n.lower() == "host"), None)
        self.authority = authority or f"{request.server_host}:{request.server_port}"
        # The server decodes header bytes as UTF-8 with surrogateescape (as aiohttp does), so this
        # gives the guest the bytes the client sent.
        self.headers = Fields(
            [(n.lower(), v.encode("utf-8", errors="surrogateescape")) for n, v in request.headers],
            mutable=False,
        )
        self.body: IncomingBody | None = IncomingBody(request.body)


class FutureTrailers(Resource):
    """Trailers of an in-memory body: there are none, and they are ready at once."""

    KIND = Kind.FUTURE_TRAILERS

    def __init__(self, trailers: Fields | None = None) -> None:
        self.trailers = trailers
        self.taken = False


class OutgoingBody(Resource):
    KIND = Kind.OUTGOING_BODY

    def __init__(self, limit: int, what: str) -> None:
        self.sink = BufferSink(limit, what)
        self.stream_taken = False
        self.finished = False
        self.trailers: Fields | None = None


class OutgoingResponse(Resource):
    KIND = Kind.OUTGOING_RESPONSE

    def __init__(self, headers: Fields) -> None:
        self.headers = headers
        self.status = 200
        self.body: OutgoingBody | None = None


class ResponseOutparam(Resource):
    KIND = Kind.RESPONSE_OUTPARAM


def method_case(method: str) -> Case:
    return Case(method.lower()) if method in _METHODS else Case("other", method)


def method_name(value: Any) -> str:
    """The method string from wasmtime's decoding of the ``method`` variant."""
    tag = getattr(value, "tag", None)
    if tag == "other":
        return str(value.payload)
    return str(tag).upper()


def scheme_case(scheme: str) -> Case:
    s = scheme.lower()
    return Case("HTTP") if s == "http" else Case("HTTPS") if s == "https" else Case("other", scheme)


# -- fields ---------------------------------------------------------------------------------


def _fields_new(ctx: HostContext) -> Any:
    return ctx.own(Fields())


def _fields_from_list(ctx: HostContext, entries: list[tuple[str, bytes]]) -> Any:
    if not all(valid_field(n, v) for n, v in entries):
        return Err(INVALID_SYNTAX)
    ctx.hold(sum(len(n) + len(v) for n, v in entries), "header fields")
    return Ok(ctx.own(Fields([(n, bytes(v)) for n, v in entries])))


def _fields_get(ctx: HostContext, self: ResourceAny, name: str) -> list[bytes]:
    return ctx.borrow(self, Fields).get(name)


def _fields_has(ctx: HostContext, self: ResourceAny, name: str) -> bool:
    return bool(ctx.borrow(self, Fields).get(name))


def _mutation(ctx: HostContext, self: ResourceAny, name: str, values: list[bytes]) -> Fields | Any:
    fields = ctx.borrow(self, Fields)
    if not fields.mutable:
        return Err(IMMUTABLE)
    if not all(valid_field(name, v) for v in values) or not valid_field(name):
        return Err(INVALID_SYNTAX)
    ctx.hold(sum(len(name) + len(v) for v in values), "header fields")
    return fields


def _fields_set(ctx: HostContext, self: ResourceAny, name: str, values: list[bytes]) -> Any:
    fields = _mutation(ctx, self, name, values)
    if not isinstance(fields, Fields):
        return fields
    key = name.lower()
    fields.entries = [(n, v) for n, v in fields.entries if n.lower() != key] + [
        (name, bytes(v)) for v in values
    ]
    return Ok()


def _fields_delete(ctx: HostContext, self: ResourceAny, name: str) -> Any:
    fields = _mutation(ctx, self, name, [])
    if not isinstance(fields, Fields):
        return fields
    key = name.lower()
    fields.entries = [(n, v) for n, v in fields.entries if n.lower() != key]
    return Ok()


def _fields_append(ctx: HostContext, self: ResourceAny, name: str, value: bytes) -> Any:
    fields = _mutation(ctx, self, name, [value])
    if not isinstance(fields, Fields):
        return fields
    fields.entries.append((name, bytes(value)))
    return Ok()


def _fields_entries(ctx: HostContext, self: ResourceAny) -> list[tuple[str, bytes]]:
    return list(ctx.borrow(self, Fields).entries)


def _fields_clone(ctx: HostContext, self: ResourceAny) -> Any:
    return ctx.own(ctx.borrow(self, Fields).copy(mutable=True))


# -- incoming request and body ----------------------------------------------------------------


def _request_method(ctx: HostContext, self: ResourceAny) -> Case:
    return method_case(ctx.borrow(self, IncomingRequest).method)


def _request_path(ctx: HostContext, self: ResourceAny) -> str:
    return ctx.borrow(self, IncomingRequest).path_with_query


def _request_scheme(ctx: HostContext, self: ResourceAny) -> Case:
    return scheme_case(ctx.borrow(self, IncomingRequest).scheme)


def _request_authority(ctx: HostContext, self: ResourceAny) -> str:
    return ctx.borrow(self, IncomingRequest).authority


def _request_headers(ctx: HostContext, self: ResourceAny) -> Any:
    # A child resource: immutable, and the entries cannot change, so sharing them is safe.
    return ctx.own(ctx.borrow(self, IncomingRequest).headers)


def _request_consume(ctx: HostContext, self: ResourceAny) -> Any:
    request = ctx.borrow(self, IncomingRequest)
    body, request.body = request.body, None
    return Err() if body is None else Ok(ctx.own(body))


def _body_stream(ctx: HostContext, self: ResourceAny) -> Any:
    body = ctx.borrow(self, IncomingBody)
    if body.stream_taken:
        return Err()
    body.stream_taken = True
    return Ok(ctx.own(InputStream(body.data)))


def _body_finish(ctx: HostContext, this: ResourceAny) -> Any:
    ctx.take(this, IncomingBody)
    return ctx.own(FutureTrailers())


def _trailers_subscribe(ctx: HostContext, self: ResourceAny) -> Any:
    ctx.borrow(self, FutureTrailers)
    return ctx.own(Pollable())


def _trailers_get(ctx: HostContext, self: ResourceAny) -> Any:
    future = ctx.borrow(self, FutureTrailers)
    if future.taken:
        return Err()  # some(err): already read
    future.taken = True
    trailers = ctx.own(future.trailers) if future.trailers is not None else None
    return Ok(Ok(trailers))


# -- outgoing response and body ---------------------------------------------------------------


def _response_new(ctx: HostContext, headers: ResourceAny) -> Any:
    fields = ctx.take(headers, Fields)
    fields.mutable = False  # the headers now belong to the response
    return ctx.own(OutgoingResponse(fields))


def _response_status(ctx: HostContext, self: ResourceAny) -> int:
    return ctx.borrow(self, OutgoingResponse).status


def _response_set_status(ctx: HostContext, self: ResourceAny, status: int) -> Any:
    response = ctx.borrow(self, OutgoingResponse)
    if not 100 <= status <= 599:
        return Err()
    response.status = status
    return Ok()


def _response_headers(ctx: HostContext, self: ResourceAny) -> Any:
    return ctx.own(ctx.borrow(self, OutgoingResponse).headers)


def _response_body(ctx: HostContext, self: ResourceAny) -> Any:
    response = ctx.borrow(self, OutgoingResponse)
    if response.body is not None:
        return Err()
    response.body = OutgoingBody(ctx.config.max_body_bytes, "the response body")
    return Ok(ctx.own(response.body))


def _outgoing_body_write(ctx: HostContext, self: ResourceAny) -> Any:
    body = ctx.borrow(self, OutgoingBody)
    if body.stream_taken:
        return Err()
    body.stream_taken = True
    return Ok(ctx.own(OutputStream(body.sink)))


def _outgoing_body_finish(ctx: HostContext, this: ResourceAny, trailers: ResourceAny | None) -> Any:
    body = ctx.take(this, OutgoingBody)
    if trailers is not None:
        body.trailers = ctx.take(trailers, Fields)
    body.finished = True
    body.sink.closed = True
    return Ok()


def _outparam_set(ctx: HostContext, param: ResourceAny, response: Any) -> None:
    ctx.take(param, ResponseOutparam)
    if ctx.response is not None:
        ctx.trap("response-outparam.set called twice")
    if isinstance(response, ResourceAny):  # ok(outgoing-response), untagged
        ctx.response = ctx.take(response, OutgoingResponse)
    else:  # err(error-code): the guest answered with an HTTP error code
        payload = getattr(response, "payload", response)
        ctx.response = ErrorResponse(getattr(payload, "tag", str(payload)))


class ErrorResponse:
    """response-outparam.set(err(code)): the guest reported a failure instead of a response."""

    def __init__(self, code: str) -> None:
        self.code = code


def _http_error_code(ctx: HostContext, err: ResourceAny) -> None:
    ctx.borrow(err, Resource)
    return None  # none of our io errors carries an HTTP error code


RESOURCES = {
    "fields": Kind.FIELDS,
    "incoming-request": Kind.INCOMING_REQUEST,
    "incoming-body": Kind.INCOMING_BODY,
    "outgoing-response": Kind.OUTGOING_RESPONSE,
    "outgoing-body": Kind.OUTGOING_BODY,
    "response-outparam": Kind.RESPONSE_OUTPARAM,
    "future-trailers": Kind.FUTURE_TRAILERS,
    "outgoing-request": Kind.OUTGOING_REQUEST,
    "request-options": Kind.REQUEST_OPTIONS,
    "incoming-response": Kind.INCOMING_RESPONSE,
    "future-incoming-response": Kind.FUTURE_INCOMING_RESPONSE,
}

SERVER_FUNCTIONS = {
    "[constructor]fields": _fields_new,
    "[static]fields.from-list": _fields_from_list,
    "[method]fields.get": _fields_get,
    "[method]fields.has": _fields_has,
    "[method]fields.set": _fields_set,
    "[method]fields.delete": _fields_delete,
    "[method]fields.append": _fields_append,
    "[method]fields.entries": _fields_entries,
    "[method]fields.clone": _fields_clone,
    "[method]incoming-request.method": _request_method,
    "[method]incoming-request.path-with-query": _request_path,
    "[method]incoming-request.scheme": _request_scheme,
    "[method]incoming-request.authority": _request_authority,
    "[method]incoming-request.headers": _request_headers,
    "[method]incoming-request.consume": _request_consume,
    "[method]incoming-body.stream": _body_stream,
    "[static]incoming-body.finish": _body_finish,
    "[method]future-trailers.subscribe": _trailers_subscribe,
    "[method]future-trailers.get": _trailers_get,
    "[constructor]outgoing-response": _response_new,
    "[method]outgoing-response.status-code": _response_status,
    "[method]outgoing-response.set-status-code": _response_set_status,
    "[method]outgoing-response.headers": _response_headers,
    "[method]outgoing-response.body": _response_body,
    "[method]outgoing-body.write": _outgoing_body_write,
    "[static]outgoing-body.finish": _outgoing_body_finish,
    "[static]response-outparam.set": _outparam_set,
    "http-error-code": _http_error_code,
}


def interfaces(client_functions: dict[str, Any]) -> list[Interface]:
    """wasi:http/types with the server side here and the client side from outgoing.py."""
    return [
        Interface("wasi:http/types", resources=RESOURCES, functions={**SERVER_FUNCTIONS, **client_functions})
    ]
