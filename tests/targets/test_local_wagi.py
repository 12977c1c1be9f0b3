"""The WAGI contract end to end: CGI variables and headers in, CGI headers out, body on stdin,
argv, guest stderr in the log, one request record and log line per request, usage counters."""

from __future__ import annotations

import os
from pathlib import Path

from devenv.model import LogStream
from devenv.targets.local.target import LocalTarget
from tests.targets import local_helpers
from tests.targets.local_helpers import Client, Comp, make_app, requests_reported

# The shared fixtures (pytest finds them as module attributes).
store, target, client = local_helpers.store, local_helpers.target, local_helpers.client


def env_of(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


async def test_cgi_environment_and_request_headers(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    await target.deploy(make_app(tmp_path / "app"))
    port = target.bound_port("demo")
    reply = await client.get(
        "demo",
        "/hello/env?name=a%20b&x",
        headers={"X-Custom-Thing": "v1", "Authorization": "Bearer secret", "Content-Type": "text/x"},
    )
    assert reply.status == 200
    env = env_of(reply.text)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["QUERY_STRING"] == "name=a%20b&x"
    assert env["PATH_INFO"] == "/env" and env["PATH_TRANSLATED"] == "/env"
    assert env["SCRIPT_NAME"] == "/hello"
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["SERVER_SOFTWARE"] == "WAGI/1"
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_HOST"] == "127.0.0.1"
    assert env["CONTENT_LENGTH"] == "0" and env["CONTENT_TYPE"] == "text/x"
    assert env["X_FULL_URL"] == f"http://127.0.0.1:{port}/hello/env?name=a%20b&x"
    assert env["X_MATCHED_ROUTE"] == "/hello/..." and env["X_RAW_COMPONENT_ROUTE"] == "/hello/..."
    assert env["X_COMPONENT_ROUTE"] == "/hello" and env["X_BASE_PATH"] == "/"
    assert env["X_RAW_PATH_INFO"] == "/env"
    assert env["AUTH_TYPE"] == ""
    assert env["HTTP_X_CUSTOM_THING"] == "v1"
    assert env["HTTP_HOST"] == f"127.0.0.1:{port}"
    assert "HTTP_AUTHORIZATION" not in env  # RFC 3875 4.1.18, as Spin


async def test_percent_encoded_path_info_is_decoded_in_path_translated(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    await target.deploy(make_app(tmp_path / "app", [Comp(routes=["/..."])]))
    reply = await client.get("demo", "/a%20b")
    assert "path: /a%20b" in reply.text  # the raw path reaches the guest as Spin passes it


async def test_argv_follows_the_template_and_query(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    await target.deploy(make_app(tmp_path / "app"))
    reply = await client.get("demo", "/hello/args?one=1&two")
    assert reply.text.splitlines() == ["/hello/args", "one=1", "two"]

    custom = make_app(tmp_path / "c", [Comp(argv="guest --flag ${ARGS}")], digest="sha256:c")
    await target.deploy(custom)
    reply = await client.get("demo", "/hello/args?k=v")
    assert reply.text.splitlines() == ["guest", "--flag", "k=v"]


async def test_post_body_reaches_stdin(client: Client, target: LocalTarget, tmp_path: Path) -> None:
    await target.deploy(make_app(tmp_path / "app"))
    payload = os.urandom(20_000).hex()  # 40 KB: more than one read
    reply = await client.request(
        "POST", "demo", "/hello/echo", data=payload, headers={"Content-Type": "text/hex"}
    )
    assert reply.status == 200
    assert reply.text == payload
    assert reply.headers["Content-Type"] == "text/hex"
    big = await client.request("POST", "demo", "/hello/env", data=b"x" * (3 * 1024 * 1024))
    assert big.status == 200 and f"CONTENT_LENGTH={3 * 1024 * 1024}" in big.text.splitlines()
    empty = await client.request("POST", "demo", "/hello/echo")
    assert empty.status == 200 and empty.text == ""


async def test_status_location_and_custom_headers_from_the_guest(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    await target.deploy(make_app(tmp_path / "app"))
    created = await client.get("demo", "/hello/created")
    assert created.status == 201
    assert created.headers["X-Guest"] == "made"
    assert created.text == "created\n"
    moved = await client.get("demo", "/hello/redirect")
    assert moved.status == 302
    assert moved.headers["Location"] == "/hello/moved"


async def test_stderr_and_request_lines_are_logged_with_tags(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    await target.deploy(make_app(tmp_path / "app"))
    reply = await client.get("demo", "/hello/world?q=1")
    assert "Hello from hello-wat v1!" in reply.text
    assert "path: /hello/world" in reply.text and "query: q=1" in reply.text
    await requests_reported(target, 1)
    lines = target.store.logs.since(0).lines
    stderr = [line for line in lines if line.stream is LogStream.STDERR]
    request = [line for line in lines if line.stream is LogStream.REQUEST]
    assert [line.text for line in stderr] == ["hello-wat: served /hello/world"]
    assert (stderr[0].app, stderr[0].component) == ("demo", "hello")
    assert len(request) == 1
    assert request[0].text.startswith("GET /hello/world 200 ") and request[0].text.endswith("ms")
    assert request[0].request_id and request[0].request_id == stderr[0].request_id
    [record] = target.store.metrics.requests("demo")
    assert (record.method, record.path, record.status, record.component) == (
        "GET",
        "/hello/world",
        200,
        "hello",
    )
    assert record.request_id == stderr[0].request_id
    assert record.latency_ms > 0


async def test_usage_counts_cpu_memory_requests_and_errors(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    await target.deploy(make_app(tmp_path / "app"))
    for _ in range(3):
        await client.get("demo", "/hello")
    await client.get("demo", "/hello/trap")
    await requests_reported(target, 4)
    usage = target.usage("demo")
    assert usage.requests_total == 4
    assert usage.errors_total == 1
    assert usage.cpu_seconds_total > 0
    assert usage.memory_high_water_bytes == 3 * 65536  # the guest's 3 pages: it never grows
