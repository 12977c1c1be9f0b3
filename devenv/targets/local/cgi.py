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
CORRUPT_HEADER_VALUE = "CORRUPT VALUE"  # what Spin's WAGI executor passes for a non-ASCII value
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


# Set for every request from the request itself; everything else in the CGI environment depends
# only on the route (``route_env``) and is computed once per runner.
REQUEST_VARIABLES = frozenset(
    {
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "QUERY_STRING",
        "REMOTE_ADDR",
        "REMOTE_HOST",
        "REQUEST_METHOD",
        "PATH_INFO",
        "X_RAW_PATH_INFO",
        "PATH_TRANSLATED",
        "SERVER_NAME",
        "SERVER_PORT",
        "X_FULL_URL",
        "X_CLIENT_ADDR",
    }
)


def route_env(route: Route, http_base: str) -> dict[str, str]:
    """The CGI and Spin route variables that are the same for every request a route serves."""
    based = based_route(http_base, route)
    return {
        "AUTH_TYPE": "",
        "GATEWAY_INTERFACE": GATEWAY_INTERFACE,
        "REMOTE_USER": "",
        "SCRIPT_NAME": route_prefix(based),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "X_MATCHED_ROUTE": based,
        "X_BASE_PATH": http_base or "/",
        "X_RAW_COMPONENT_ROUTE": route.path,
        "X_COMPONENT_ROUTE": route_prefix(route.path),
    }


def request_env(request: GuestRequest, served_route: str) -> dict[str, str]:
    """The variables taken from the request: ``REQUEST_VARIABLES`` and one HTTP_* per header.

    ``served_route`` is the route with the app's base (``based_route``)."""
    raw_path_info = trailing_wildcard(served_route, request.path)
    env: dict[str, str] = {}
    host_header = ""
    content_type = ""
    for name, value in request.headers:
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in _SKIPPED_HEADERS:
            continue
        if not value.isascii():
            # obs-text (bytes 0x80-0xFF, which aiohttp hands over as surrogate escapes) cannot
            # go into the guest's environment as UTF-8; Spin's WAGI executor (HeaderValue's
            # to_str failing) passes this placeholder instead, and ignores such a Host.
            env[key] = CORRUPT_HEADER_VALUE
            continue
        env[key] = value
        if key == "HTTP_HOST":
            host_header = value
        elif key == "HTTP_CONTENT_TYPE":
            content_type = value
    host, port = request.server_host, str(request.server_port)
    if host_header:
        name, _, p = host_header.partition(":")
        host = name or host
        port = p or port
    path_and_query = request.path + ("?" + request.query if request.query else "")
    env.update(
        CONTENT_LENGTH=str(len(request.body)),
        CONTENT_TYPE=content_type,
        QUERY_STRING=request.query,
        REMOTE_ADDR=request.client_addr,
        REMOTE_HOST=request.client_addr,
        REQUEST_METHOD=request.method,
        PATH_INFO=raw_path_info,  # Spin's route variable overrides the decoded CGI one
        X_RAW_PATH_INFO=raw_path_info,
        PATH_TRANSLATED=unquote(raw_path_info, errors="replace"),
        SERVER_NAME=host,
        SERVER_PORT=port,
        X_FULL_URL=f"{request.scheme}://{host_header or 'localhost'}{path_and_query}",
        X_CLIENT_ADDR=f"{request.client_addr}:{request.client_port}",
    )
    return env


def build_env(request: GuestRequest, http_base: str) -> dict[str, str]:
    """The CGI meta-variables and Spin's route variables for one request."""
    env = route_env(request.route, http_base)
    env.update(request_env(request, based_route(http_base, request.route)))
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
