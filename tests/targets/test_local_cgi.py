"""CGI output parsing and argv as Spin's WAGI executor defines them (pure functions, no guest)."""

from __future__ import annotations

import pytest

from devenv.model import Route
from devenv.targets.local.cgi import build_argv, parse_output, trailing_wildcard
from devenv.targets.local.executor import GuestError, GuestRequest


def test_crlf_headers_status_text_and_body_bytes_are_kept() -> None:
    out = b"Status: 418 I'm a teapot\r\nContent-Type: text/plain\r\nX-A: 1\r\n\r\nbody\r\nwith CRLF"
    r = parse_output(out, "c")
    assert r.status == 418
    assert ("Content-Type", "text/plain") in r.headers and ("X-A", "1") in r.headers
    assert r.body == b"body\r\nwith CRLF"


def test_location_alone_is_a_302_and_status_wins_over_it() -> None:
    assert parse_output(b"Location: /x\n\n", "c").status == 302
    assert parse_output(b"Location: /x\nStatus: 301\n\n", "c").status == 301


def test_unparseable_status_is_a_502_like_spin() -> None:
    assert parse_output(b"Status: abc\nContent-Type: text/plain\n\n", "c").status == 502


def test_invalid_header_names_are_dropped_and_the_last_duplicate_wins() -> None:
    r = parse_output(b"Content-Type: a\nBad Header: x\nX-D: 1\nX-D: 2\n\n", "c")
    assert ("X-D", "2") in r.headers and ("X-D", "1") not in r.headers
    assert all(name != "Bad Header" for name, _ in r.headers)


@pytest.mark.parametrize(
    ("stdout", "reason"),
    [
        (b"", "wrote nothing to stdout"),
        (b"just a body\n", "no blank line"),
        (b"X-Only: header\n\nbody", "Location' or 'Content-Type'"),
    ],
)
def test_bad_output_is_a_guest_error_with_a_reason(stdout: bytes, reason: str) -> None:
    with pytest.raises(GuestError) as err:
        parse_output(stdout, "comp")
    assert reason in err.value.reason


def _request(path: str, query: str) -> GuestRequest:
    return GuestRequest("GET", path, query, (), b"", Route("/..."), "1")


def test_argv_template_as_spin_expands_it() -> None:
    assert build_argv("${SCRIPT_NAME} ${ARGS}", _request("/p", "a=1&b")) == ["/p", "a=1", "b"]
    assert build_argv("${SCRIPT_NAME} ${ARGS}", _request("/p", "")) == ["/p", ""]  # Spin keeps the ""
    assert build_argv("tool -v", _request("/p", "x")) == ["tool", "-v"]


def test_trailing_wildcard() -> None:
    assert trailing_wildcard("/static/...", "/static/css/a.css") == "/css/a.css"
    assert trailing_wildcard("/...", "/a/b") == "/a/b"
    assert trailing_wildcard("/exact", "/exact") == ""
