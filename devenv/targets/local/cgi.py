"""CGI as Spin's WAGI executor speaks it: the environment and argv a guest gets, and how its
stdout becomes an HTTP response.

Follows spin's ``crates/http/src/wagi`` (``build_headers``/``compose_response``) and
``crates/trigger-http/src/headers.rs`` (the SPIN_*/X_* route variables, which override the CGI
ones of the same name), so a guest that works here works on the cluster's Spin shim. Deliberate
differences, each because Spin's behaviour there is an accident rather than a contract:
- ``CONTENT_TYPE`` is the request's Content-Type (Spin looks up a header literally named
  "CONTENT_TYPE" and so always passes ""); ``HTTP_CONTENT_TYPE`` is set either way.
- ``X_BASE_PATH`` is the app's ``http_base`` (Spin hard-codes "/", the default base).
- With both ``Status`` and ``Location``, ``Status`` wins (Spin's result depends on hash order).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from devenv.model import Route
from devenv.targets.local.executor import GuestError, GuestRequest, GuestResponse

GATEWAY_INTERFACE = "CGI/1.1"
SERVER_SOFTWARE = "WAGI/1"
_SKIPPED_HEADERS = frozenset({"HTTP_AUTHORIZATION", "HTTP_CONNECTION"})  # RFC 3875 4.1.18
_HEADER_END = re.compile(rb"\n\r*\n")  # Spin ignores CR while scanning the header block
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def based_route(http_base: str, route: Route) -> str:
    """The route as served: the app's base joined with the manifest route ("/base" + "/hello")."""
    base = http_base.rstrip("/")
    return base + route.path if base else route.path


def route_prefix(path: str) -> str:
    """A route without its wildcard: "/static/..." -> "/static", "/..." -> "" (as Spin's SCRIPT_NAME)."""
    return path[: -len("/...")] if path.endswith("/...") else path


def trailing_wildcard(route_path: str, request_path: str) -> str:
    """The part of the path a wildcard matched: "/static/css/a" under "/static/..." -> "/css/a"."""
    if not route_path.endswith("/..."):
        return ""
    return request_path[len(route_prefix(route_path)) :]


def build_argv(template: str, request: GuestRequest) -> list[str]:
    """Spin's argv: the template with ${SCRIPT_NAME} = the request path and ${ARGS} = the query with
    '&' turned into spaces, then split on single spaces (so an empty query leaves a "" argument,
    exactly as Spin does)."""
    argv = template.replace("${SCRIPT_NAME}", request.path).replace(
        "${ARGS}", request.query.replace("&", " ")
    )
    return argv.split(" ")


def _host_and_port(request: GuestRequest) -> tuple[str, str, str]:
    host_header = ""
    for name, value in request.headers:
        if name.lower() == "host":
            host_header = value
    host, port = request.server_host, str(request.server_port)
    if host_header:
        name, _, p = host_header.partition(":")
        host = name or host
        port = p or port
    return host, port, host_header or "localhost"


def build_env(request: GuestRequest, http_base: str) -> dict[str, str]:
    """The CGI meta-variables and Spin's route variables for one request."""
    based = based_route(http_base, request.route)
    raw_path_info = trailing_wildcard(based, request.path)
    host, port, host_header = _host_and_port(request)
    path_and_query = request.path + ("?" + request.query if request.query else "")
    content_type = ""
    env: dict[str, str] = {
        "AUTH_TYPE": "",
        "CONTENT_LENGTH": str(len(request.body)),
        "GATEWAY_INTERFACE": GATEWAY_INTERFACE,
        "QUERY_STRING": request.query,
        "REMOTE_ADDR": request.client_addr,
        "REMOTE_HOST": request.client_addr,
        "REMOTE_USER": "",
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": route_prefix(based),
        "PATH_INFO": raw_path_info,  # Spin's route variable overrides the decoded CGI one
        "X_RAW_PATH_INFO": raw_path_info,
        "PATH_TRANSLATED": unquote(raw_path_info, errors="replace"),
        "SERVER_NAME": host,
        "SERVER_PORT": port,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "X_FULL_URL": f"{request.scheme}://{host_header}{path_and_query}",
        "X_MATCHED_ROUTE": based,
        "X_BASE_PATH": http_base or "/",
        "X_RAW_COMPONENT_ROUTE": request.route.path,
        "X_COMPONENT_ROUTE": route_prefix(request.route.path),
        "X_CLIENT_ADDR": f"{request.client_addr}:{request.client_port}",
    }
    for name, value in request.headers:
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in _SKIPPED_HEADERS:
            continue
        env[key] = value
        if key == "HTTP_CONTENT_TYPE":
            content_type = value
    env["CONTENT_TYPE"] = content_type
    return env


def parse_output(stdout: bytes, component: str) -> GuestResponse:
    """Turn a guest's stdout (CGI headers, blank line, body) into a response, or raise GuestError."""
    if not stdout:
        raise GuestError(
            f"component `{component}` wrote nothing to stdout; a WAGI guest must print CGI headers "
            "(e.g. 'Content-Type: text/plain', a blank line, then the body). Check the `executor` in spin.toml"
        )
    end = _HEADER_END.search(stdout)
    if end is None:
        raise GuestError(
            "bad CGI output: no blank line after the headers (Content-Type or Location required)"
        )
    head = stdout[: end.start()].replace(b"\r", b"").decode("utf-8", errors="replace")
    body = stdout[end.end() :]
    fields: dict[str, tuple[str, str]] = {}  # lower-case name -> (name, value); the last one wins
    for line in head.strip().split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = (name.strip(), value.strip())
    status = 200
    headers: list[tuple[str, str]] = []
    sufficient = False
    if "status" in fields:
        sufficient = True
        code = fields["status"][1].split(" ", 1)[0]
        status = int(code) if code.isdigit() and 100 <= int(code) <= 999 else 502
    if "location" in fields:
        sufficient = True
        headers.append(("Location", fields["location"][1]))
        if "status" not in fields:
            status = 302
    if "content-type" in fields:
        sufficient = True
        headers.append(("Content-Type", fields["content-type"][1]))
    if not sufficient:
        raise GuestError("bad CGI output: exactly one of 'Location' or 'Content-Type' must be specified")
    for key, (name, value) in fields.items():
        if key in ("status", "location", "content-type"):
            continue
        if _TOKEN.match(name) and "\n" not in value:
            headers.append((name, value))
    return GuestResponse(status=status, headers=tuple(headers), body=body)
