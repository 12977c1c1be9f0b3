"""echo-py: one route per host feature, for the local target's tests and for trying things out.

  POST /echo-py/echo          the body back; request headers x-* come back as x-echo-*
  GET  /echo-py/status/N      an empty response with status N
  GET  /echo-py/big?size=N    N bytes of a repeating pattern
  GET  /echo-py/print         prints to stdout and stderr
  GET  /echo-py/env           the environment the guest sees
  GET  /echo-py/file          reads /static/hello.txt (granted by `files`)
  GET  /echo-py/denied-file   tries /secret/key.txt (not granted)
  GET  /echo-py/outbound?url= GET a URL (allowed_outbound_hosts decides); each header=name:value
                              is set on the outgoing request
  GET  /echo-py/trap          starts a response, then fails mid-body
  GET  /echo-py/loop          never returns (the request deadline stops it)
  GET  /echo-py/oom           allocates until memory runs out
  GET  /echo-py/count         a module-level counter: always 1 on a fresh instance per request
  GET  /echo-py/kv            calls Spin's key-value API, which the local target does not provide
  GET  /echo-py/oversized     blocking-write-and-flush of 8 KiB (wasi:io allows 4096): refused
"""

import os
import sys
from urllib.parse import parse_qs, urlsplit

from componentize_py_types import Err
from spin_sdk.wit import exports
from spin_sdk.wit.imports import wasi_http_outgoing_handler_0_2_0 as outgoing
from spin_sdk.wit.imports.wasi_http_types_0_2_0 import (
    Fields,
    IncomingRequest,
    Method_Post,
    OutgoingBody,
    OutgoingRequest,
    ResponseOutparam,
    Scheme_Http,
    Scheme_Https,
)
from wasi_http import read_body, send, start_response, write_all

PATTERN = bytes(range(256))
REQUESTS_SEEN = 0


def text(response_out, status, message):
    send(response_out, status, [("content-type", "text/plain; charset=utf-8")], message.encode())


def fetch(url: str, headers: list[tuple[str, bytes]] | None = None) -> tuple[int, bytes]:
    parts = urlsplit(url)
    request = OutgoingRequest(Fields.from_list(headers or []))
    request.set_scheme(Scheme_Https() if parts.scheme == "https" else Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else "") or "/")
    try:
        future = outgoing.handle(request, None)
    except Err as err:  # e.g. ErrorCode_HttpRequestDenied: the host is not in allowed_outbound_hosts
        raise RuntimeError(f"outbound request refused: {type(err.value).__name__}") from None
    with future.subscribe() as ready:
        ready.block()
    result = future.get()
    if isinstance(result, Err) or isinstance(result.value, Err):
        raise RuntimeError(f"outbound request failed: {result}")
    response = result.value.value
    status = response.status()
    body = read_body(response)
    return status, body


class WasiHttpIncomingHandler020(exports.WasiHttpIncomingHandler020):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        target = urlsplit(request.path_with_query() or "/")
        route = target.path.removeprefix("/echo-py")
        query = parse_qs(target.query)

        if route == "/echo":
            headers = [("content-type", "application/octet-stream")]
            for name, value in request.headers().entries():
                if name.startswith("x-"):
                    headers.append(("x-echo-" + name[2:], value.decode()))
            method = request.method()
            headers.append(("x-method", "POST" if isinstance(method, Method_Post) else type(method).__name__))
            send(response_out, 200, headers, read_body(request))
        elif route.startswith("/status/"):
            send(response_out, int(route.rsplit("/", 1)[1]), [("x-status", "set-by-guest")], b"")
        elif route == "/big":
            size = int(query.get("size", ["0"])[0])
            data = (PATTERN * (size // len(PATTERN) + 1))[:size]
            send(response_out, 200, [("content-type", "application/octet-stream")], data)
        elif route == "/print":
            print("hello on stdout from echo-py")
            print("hello on stderr from echo-py", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            text(response_out, 200, "printed\n")
        elif route == "/env":
            text(response_out, 200, "".join(f"{k}={v}\n" for k, v in sorted(os.environ.items())))
        elif route == "/file":
            with open("/static/hello.txt") as f:
                text(response_out, 200, f.read())
        elif route == "/denied-file":
            try:
                with open("/secret/key.txt") as f:
                    text(response_out, 200, f.read())
            except OSError as err:
                text(response_out, 403, f"denied: {type(err).__name__}\n")
        elif route == "/outbound":
            try:
                headers = [(n, v.encode()) for n, _, v in (h.partition(":") for h in query.get("header", []))]
                status, body = fetch(query["url"][0], headers)
                text(response_out, 200, f"upstream said {status}: {body.decode(errors='replace')}")
            except RuntimeError as err:
                text(response_out, 502, f"{err}\n")
        elif route == "/trap":
            body = start_response(response_out, 200, [("content-type", "text/plain")])
            with body.write() as stream:
                write_all(stream, b"first half of the body\n")
                raise RuntimeError("echo-py fails mid-response on purpose")
            OutgoingBody.finish(body, None)
        elif route == "/loop":
            n = 0
            while True:
                n += 1
        elif route == "/oom":
            hoard = []
            while True:
                hoard.append(bytearray(8 * 1024 * 1024))
        elif route == "/count":
            global REQUESTS_SEEN
            REQUESTS_SEEN += 1
            text(response_out, 200, f"{REQUESTS_SEEN}\n")
        elif route == "/oversized":
            body = start_response(response_out, 200, [("content-type", "text/plain")])
            with body.write() as stream:
                stream.blocking_write_and_flush(b"x" * 8192)
            OutgoingBody.finish(body, None)
        elif route == "/kv":
            from spin_sdk.wit.imports import fermyon_spin_key_value_2_0_0 as kv

            with kv.Store.open("default") as store:
                text(response_out, 200, repr(store.get("key")))
        else:
            text(response_out, 404, f"no route {route!r} in echo-py\n")
