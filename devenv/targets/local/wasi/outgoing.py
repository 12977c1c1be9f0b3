"""wasi:http/outgoing-handler 0.2: outbound HTTP, only to the manifest's ``allowed_outbound_hosts``.

A request to any other host is refused with ``HTTP-request-denied`` (what Spin returns) and a log
line naming the URL and the key to change. Allowed requests are sent with ``http.client`` when
the guest first reads the response (by then it has written and finished the body), bounded by
the request's own deadline.

Spin's host patterns: ``scheme://host[:port]`` where scheme, host and port may be ``*``, a host
may start with ``*.`` for subdomains or be a CIDR network, a port may be a range ``8000..9000``,
and a missing port means the scheme's default.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from wasmtime.component import ResourceAny

from devenv.targets.local.guest_pool import lend_guest_slot
from devenv.targets.local.wasi.codec import Case, Err, Ok
from devenv.targets.local.wasi.host import HostContext, Kind, Resource
from devenv.targets.local.wasi.http_types import (
    Fields,
    IncomingBody,
    OutgoingBody,
    method_case,
    method_name,
    scheme_case,
)
from devenv.targets.local.wasi.io import Pollable
from devenv.targets.local.wasi.registry import Interface

# Spin's well-known ports: an allowed host without a port means the scheme's default.
_DEFAULT_PORTS = {"http": 80, "https": 443, "redis": 6379, "postgres": 5432, "mysql": 3306, "mqtt": 1883}


def _host_key(host: str) -> object:
    """A host as Spin compares them (``url::Host``): an IP address by value, an IPv6 one with or
    without its brackets (``[::1]`` in a URL, ``::1`` from ``urlsplit().hostname``), any other
    host as a lowercased name."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        return host.lower()


def _network(host: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The addresses an allowed host in CIDR form names ("10.0.0.0/8", "2001:db8::/32"; host bits
    dropped, as IpNetwork::from_str_truncate does), or None if it is not one."""
    if "/" not in host:
        return None
    try:
        return ipaddress.ip_network(host, strict=False)
    except ValueError:
        return None


def _is_ip(host: str) -> bool:
    host = host.strip()
    return _network(host) is not None or not isinstance(_host_key(host.removesuffix("/")), str)


def _port_allows(spec: str, port: int) -> bool:
    """An explicit port of an allowed host: digits, or a range "8000..9000" (end excluded, a
    Rust Range as in IndividualPortConfig)."""
    start, dots, end = spec.partition("..")
    try:
        return int(start) <= port < int(end) if dots else int(spec) == port
    except ValueError:
        return False  # the manifest reader refuses these; never let one match, or raise


@dataclass(frozen=True)
class HostPattern:
    scheme: str  # "*" or a scheme
    host: str  # "*", "*.example.com", a host ("[::1]" for an IPv6 address) or a CIDR network
    port: str  # "*", digits or a range "8000..9000" ("" = the scheme's default)

    @classmethod
    def parse(cls, text: str) -> HostPattern | None:
        if "://" not in text or "{{" in text:
            return None  # templated entries are resolved by Spin's variables, not here
        scheme, rest = text.strip().split("://", 1)
        # Split off the port at the last ':' as AllowedHostConfig::parse does, unless the whole
        # rest is an IP address: an IPv6 one has colons of its own ("[::1]", "[::1]:8080").
        host, port = rest, ""
        if ":" in rest:
            head, _, tail = rest.rpartition(":")
            if not tail:
                host = head
            elif not _is_ip(rest):
                host, port = head, tail.split("/", 1)[0]
        host = host.strip().removesuffix("/")
        return cls(scheme.lower(), host.lower(), port)

    def allows(self, scheme: str, host: str, port: int | None) -> bool:
        if self.scheme not in ("*", scheme):
            return False
        network = _network(self.host)
        if network is not None:
            address = _host_key(host)
            if isinstance(address, str) or address not in network:
                return False
        elif self.host != "*":
            if self.host.startswith("*."):
                if not host.endswith(self.host[1:]):
                    return False
            elif _host_key(self.host) != _host_key(host):
                return False
        if self.port == "*":
            return True
        # PortConfig::allows: a request without a port is on the scheme's default (none for a
        # scheme without one); an explicit port, 0 included, is only ever itself.
        have = port if port is not None else _DEFAULT_PORTS.get(scheme)
        if have is None:
            return False
        return _port_allows(self.port, have) if self.port != "" else _DEFAULT_PORTS.get(scheme) == have


def allowed(patterns: tuple[str, ...], scheme: str, host: str, port: int | None) -> bool:
    """Whether ``allowed_outbound_hosts`` lets a request reach ``scheme://host:port``; ``host`` as
    ``urlsplit`` gives it (an IPv6 address without brackets), ``port`` None when the authority
    names none."""
    parsed = (HostPattern.parse(p) for p in patterns)
    return any(p is not None and p.allows(scheme, host.lower(), port) for p in parsed)


def allows_relative(patterns: tuple[str, ...]) -> bool:
    """Whether ``allowed_outbound_hosts`` lets a component call its own app (Spin's
    ``AllowedHostConfig::allows_relative`` for the schemes http and https)."""
    for text in patterns:
        p = HostPattern.parse(text)
        if p is not None and p.scheme in ("*", "http", "https") and p.host in ("*", "self", "self.alt"):
            return True
    return False


class OutgoingRequest(Resource):
    KIND = Kind.OUTGOING_REQUEST

    def __init__(self, headers: Fields) -> None:
        self.headers = headers
        self.method = "GET"
        self.path_with_query: str | None = None
        self.scheme: str | None = None
        self.authority: str | None = None
        self.body: OutgoingBody | None = None


class RequestOptions(Resource):
    KIND = Kind.REQUEST_OPTIONS

    def __init__(self) -> None:
        self.timeouts: dict[str, int | None] = {"connect": None, "first-byte": None, "between-bytes": None}


class IncomingResponse(Resource):
    KIND = Kind.INCOMING_RESPONSE

    def __init__(self, status: int, headers: Fields, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body: IncomingBody | None = IncomingBody(body)


class FutureIncomingResponse(Resource):
    KIND = Kind.FUTURE_INCOMING_RESPONSE

    def __init__(
        self, request: OutgoingRequest, options: RequestOptions | None, host: str, port: int
    ) -> None:
        self.request = request
        self.options = options
        self.host = host  # what allowed_outbound_hosts was checked against: all we connect to
        self.port = port
        self.outcome: Any = None  # IncomingResponse or an error-code Case, once sent
        self.taken = False


# -- outgoing-request and request-options -----------------------------------------------------


def _request_new(ctx: HostContext, headers: ResourceAny) -> Any:
    fields = ctx.take(headers, Fields)
    fields.mutable = False
    return ctx.own(OutgoingRequest(fields))


def _request_body(ctx: HostContext, self: ResourceAny) -> Any:
    request = ctx.borrow(self, OutgoingRequest)
    if request.body is not None:
        return Err()
    request.body = OutgoingBody(ctx.config.max_body_bytes, "an outbound request body")
    return Ok(ctx.own(request.body))


def _getter(attr: str, encode: Any = None) -> Any:
    def get(ctx: HostContext, self: ResourceAny) -> Any:
        value = getattr(ctx.borrow(self, OutgoingRequest), attr)
        return encode(value) if encode is not None and value is not None else value

    return get


def _setter(attr: str, decode: Any = None) -> Any:
    def set_(ctx: HostContext, self: ResourceAny, value: Any) -> Any:
        request = ctx.borrow(self, OutgoingRequest)
        setattr(request, attr, decode(value) if decode is not None and value is not None else value)
        return Ok()

    return set_


def _scheme_name(value: Any) -> str:
    tag = getattr(value, "tag", "")
    return str(value.payload) if tag == "other" else tag.lower()


def _headers(ctx: HostContext, self: ResourceAny) -> Any:
    return ctx.own(ctx.borrow(self, OutgoingRequest).headers)


def _options_new(ctx: HostContext) -> Any:
    return ctx.own(RequestOptions())


def _timeout_getter(key: str) -> Any:
    return lambda ctx, self: ctx.borrow(self, RequestOptions).timeouts[key]


def _timeout_setter(key: str) -> Any:
    def set_(ctx: HostContext, self: ResourceAny, value: int | None) -> Any:
        ctx.borrow(self, RequestOptions).timeouts[key] = value
        return Ok()

    return set_


# -- the handler and the response side ---------------------------------------------------------


def _handle(ctx: HostContext, request: ResourceAny, options: ResourceAny | None) -> Any:
    req = ctx.take(request, OutgoingRequest)
    opts = ctx.take(options, RequestOptions) if options is not None else None
    # Spin's self request: no authority (a relative URL), or the host "self.alt" for SDKs that
    # must send one.
    if not req.authority or req.authority.split(":", 1)[0].lower() == "self.alt":
        return _handle_self(ctx, req, opts)
    scheme = req.scheme or "https"
    authority = req.authority or ""
    url = f"{scheme}://{authority}{req.path_with_query or '/'}"
    parts = urlsplit(f"//{authority}")
    try:
        port = parts.port  # None when absent; an explicit ":0" stays 0, not the default port
    except ValueError:
        return Err(Case("HTTP-request-URI-invalid"))
    host = parts.hostname or ""
    if not host or parts.netloc != authority or "@" in authority:
        return Err(Case("HTTP-request-URI-invalid"))  # userinfo, a path or a query in the authority
    if not allowed(ctx.config.allowed_outbound_hosts, scheme, host, port):
        ctx.note(
            f"denied outbound HTTP {req.method} {url}: {scheme}://{authority} is not in "
            f"allowed_outbound_hosts (add it to [component.{ctx.config.component_id}] in spin.toml)"
        )
        return Err(Case("HTTP-request-denied"))
    dial = port if port is not None else _DEFAULT_PORTS.get(scheme, 0)
    return Ok(ctx.own(FutureIncomingResponse(req, opts, host, dial)))


def _handle_self(ctx: HostContext, req: OutgoingRequest, opts: RequestOptions | None) -> Any:
    """A relative URL (or ``http://self.alt/...``): back into this app, as Spin routes it, when
    allowed_outbound_hosts allows relative requests (``http://self``, ``https://self``,
    ``*://self``, ``self.alt``, or a ``*`` host, for http or https; the port is not checked)."""
    path = req.path_with_query or "/"
    if not allows_relative(ctx.config.allowed_outbound_hosts):
        ctx.note(
            f"denied outbound HTTP {req.method} {path} to this app (a relative URL or http://self): "
            f'add "http://self" to allowed_outbound_hosts in [component.{ctx.config.component_id}] in spin.toml'
        )
        return Err(Case("HTTP-request-denied"))
    origin = ctx.config.self_origin
    if origin is None:
        ctx.note(f"outbound HTTP {req.method} {path} to this app: the app's own address is not known here")
        return Err(Case("destination-unavailable"))
    host, _, port = origin.rpartition(":")
    req.scheme, req.authority = "http", origin
    return Ok(ctx.own(FutureIncomingResponse(req, opts, host.strip("[]"), int(port))))


def _send(ctx: HostContext, future: FutureIncomingResponse) -> Any:
    req = future.request
    scheme = req.scheme or "https"
    remaining = max(0.001, ctx.deadline - time.monotonic())
    if future.options and future.options.timeouts["connect"] is not None:
        remaining = min(remaining, future.options.timeouts["connect"] / 1e9)
    conn_cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    body = bytes(req.body.sink.data) if req.body is not None else None
    # The socket timeout bounds each read, not the exchange: a server sending a byte now and
    # then would hold this guest thread past the request's deadline. At the deadline the
    # socket is shut down, which ends any read in progress.
    conn = conn_cls(future.host, future.port, timeout=remaining)
    watchdog: threading.Timer | None = None
    try:
        try:
            conn.connect()  # bounded by the timeout; the socket is kept, conn drops it at close
            watchdog = threading.Timer(max(0.001, ctx.deadline - time.monotonic()), _abort, (conn.sock,))
            watchdog.start()
            conn.putrequest(req.method, req.path_with_query or "/", skip_accept_encoding=True)
            # One Host header, for the authority that allowed_outbound_hosts approved: putrequest
            # has written it (from the host and port dialled; the port only when not the
            # scheme's default), so a guest's own "host" entry is dropped, not sent as a second
            # one. Spin does the same: wasmtime-wasi-http refuses "host" in guest fields
            # (DEFAULT_FORBIDDEN_HEADERS) and builds it from the authority, and Spin's outbound
            # HTTP factor removes any Host before hyper sets it from the request URI.
            for name, value in req.headers.entries:
                if name.lower() != "host":
                    conn.putheader(name, value)
            if body is not None and not req.headers.get("content-length"):
                conn.putheader("content-length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read(ctx.config.max_body_bytes + 1)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            conn.close()
    except (OSError, http.client.HTTPException) as err:
        return _failure(ctx, f"{scheme}://{req.authority}", err)
    if time.monotonic() >= ctx.deadline:  # cut at the deadline: the body may be truncated
        return _failure(ctx, f"{scheme}://{req.authority}", TimeoutError())
    if len(data) > ctx.config.max_body_bytes:
        return Case("HTTP-response-body-size")
    ctx.hold(len(data), "an outbound response body")
    headers = Fields(
        [(n.lower(), v.encode("latin-1", errors="replace")) for n, v in resp.getheaders()], False
    )
    return IncomingResponse(resp.status, headers, data)


def _failure(ctx: HostContext, origin: str, err: Exception) -> Case:
    if isinstance(err, TimeoutError) or time.monotonic() >= ctx.deadline:
        ctx.note(f"outbound HTTP to {origin} timed out (the request deadline, or its connect-timeout)")
        return Case("connection-timeout")
    if isinstance(err, ConnectionRefusedError):
        return Case("connection-refused")
    if isinstance(err, http.client.HTTPException):
        return Case("HTTP-protocol-error")
    ctx.note(f"outbound HTTP to {origin} failed: {err}")
    return Case("destination-unavailable")


def _abort(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def _future_subscribe(ctx: HostContext, self: ResourceAny) -> Any:
    ctx.borrow(self, FutureIncomingResponse)
    return ctx.own(Pollable())  # sending happens in get(): ready at once


def _future_get(ctx: HostContext, self: ResourceAny) -> Any:
    future = ctx.borrow(self, FutureIncomingResponse)
    if future.taken:
        return Err()
    future.taken = True
    with lend_guest_slot():  # the call may be into this very app, which needs a guest thread
        outcome = _send(ctx, future)
    if isinstance(outcome, Case):
        return Ok(Err(outcome))
    return Ok(Ok(ctx.own(outcome)))


def _response_status(ctx: HostContext, self: ResourceAny) -> int:
    return ctx.borrow(self, IncomingResponse).status


def _response_headers(ctx: HostContext, self: ResourceAny) -> Any:
    return ctx.own(ctx.borrow(self, IncomingResponse).headers)


def _response_consume(ctx: HostContext, self: ResourceAny) -> Any:
    response = ctx.borrow(self, IncomingResponse)
    body, response.body = response.body, None
    return Err() if body is None else Ok(ctx.own(body))


CLIENT_FUNCTIONS = {
    "[constructor]outgoing-request": _request_new,
    "[method]outgoing-request.body": _request_body,
    "[method]outgoing-request.method": _getter("method", method_case),
    "[method]outgoing-request.set-method": _setter("method", method_name),
    "[method]outgoing-request.path-with-query": _getter("path_with_query"),
    "[method]outgoing-request.set-path-with-query": _setter("path_with_query"),
    "[method]outgoing-request.scheme": _getter("scheme", scheme_case),
    "[method]outgoing-request.set-scheme": _setter("scheme", _scheme_name),
    "[method]outgoing-request.authority": _getter("authority"),
    "[method]outgoing-request.set-authority": _setter("authority"),
    "[method]outgoing-request.headers": _headers,
    "[constructor]request-options": _options_new,
    "[method]request-options.connect-timeout": _timeout_getter("connect"),
    "[method]request-options.set-connect-timeout": _timeout_setter("connect"),
    "[method]request-options.first-byte-timeout": _timeout_getter("first-byte"),
    "[method]request-options.set-first-byte-timeout": _timeout_setter("first-byte"),
    "[method]request-options.between-bytes-timeout": _timeout_getter("between-bytes"),
    "[method]request-options.set-between-bytes-timeout": _timeout_setter("between-bytes"),
    "[method]future-incoming-response.subscribe": _future_subscribe,
    "[method]future-incoming-response.get": _future_get,
    "[method]incoming-response.status": _response_status,
    "[method]incoming-response.headers": _response_headers,
    "[method]incoming-response.consume": _response_consume,
}

INTERFACES = [Interface("wasi:http/outgoing-handler", functions={"handle": _handle})]
