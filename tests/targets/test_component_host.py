"""The wasi:http component host, driven through its runner with the real sample components
(hello-py, echo-py; built once and cached, see component_builds)."""

from __future__ import annotations

import dataclasses
import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devenv.manifest import load_app
from devenv.model import LogStream, Route
from devenv.targets.local.compile_cache import CompileCache
from devenv.targets.local.component_host import HttpComponentRunner, build_runner
from devenv.targets.local.executor import GuestError, GuestRequest, GuestResponse, RequestLimits
from devenv.targets.local.file_mounts import prepare_preopens
from devenv.targets.local.runtime import WasmRuntime
from tests.targets.component_builds import COMPILED, SAMPLES, sample_wasm

pytestmark = pytest.mark.slow  # the first run builds the samples (~11 s each) and compiles them


class Logs:
    def __init__(self) -> None:
        self.lines: list[tuple[LogStream, str]] = []

    def __call__(self, stream: LogStream, text: str) -> None:
        self.lines.append((stream, text))

    def of(self, stream: LogStream) -> list[str]:
        return [t for s, t in self.lines if s is stream]


@pytest.fixture(scope="module")
def runtime() -> Iterator[WasmRuntime]:
    rt = WasmRuntime()
    yield rt
    rt.close()


def _runner(
    runtime: WasmRuntime,
    name: str,
    staging: Path,
    limits: RequestLimits,
    allowed_outbound_hosts: tuple[str, ...] | None = None,
) -> HttpComponentRunner:
    app = load_app(SAMPLES / name / "spin.toml")
    component = app.components[name]
    if allowed_outbound_hosts is not None:
        component = dataclasses.replace(component, allowed_outbound_hosts=allowed_outbound_hosts)
    preopens = prepare_preopens(app, component, staging)
    runner = build_runner(
        component=component,
        wasm_path=sample_wasm(name),
        runtime=runtime,
        cache=CompileCache(COMPILED, runtime.config_key),
        limits=limits,
        preopens=preopens,
    )
    assert isinstance(runner, HttpComponentRunner)
    return runner


@pytest.fixture(scope="module")
def hello(runtime: WasmRuntime, tmp_path_factory: pytest.TempPathFactory) -> HttpComponentRunner:
    return _runner(runtime, "hello-py", tmp_path_factory.mktemp("hello"), RequestLimits(timeout_s=120))


@pytest.fixture(scope="module")
def echo(runtime: WasmRuntime, tmp_path_factory: pytest.TempPathFactory) -> HttpComponentRunner:
    return _runner(runtime, "echo-py", tmp_path_factory.mktemp("echo"), RequestLimits(timeout_s=120))


@pytest.fixture(scope="module")
def echo_strict(runtime: WasmRuntime, tmp_path_factory: pytest.TempPathFactory) -> HttpComponentRunner:
    """echo-py with a 1 s deadline and a 64 MiB memory cap."""
    limits = RequestLimits(timeout_s=1.0, memory_bytes=64 * 1024 * 1024)
    return _runner(runtime, "echo-py", tmp_path_factory.mktemp("strict"), limits)


def request(
    path: str,
    method: str = "GET",
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
    query: str = "",
) -> GuestRequest:
    return GuestRequest(
        method=method,
        path=path,
        query=query,
        headers=(("host", "127.0.0.1:3000"), *headers),
        body=body,
        route=Route("/" + path.split("/")[1] + "/..."),
        request_id="req-1",
    )


def serve(runner: HttpComponentRunner, req: GuestRequest, logs: Logs | None = None) -> GuestResponse:
    response, _stats = runner.handle(req, logs if logs is not None else Logs())
    return response


def test_hello_answers_with_its_manifest_environment(hello: HttpComponentRunner) -> None:
    r = serve(hello, request("/hello-py/there", query="x=1"))
    assert r.status == 200
    assert ("content-type", "text/plain; charset=utf-8") in r.headers
    assert r.body == b"Hello from hello-py at /hello-py/there?x=1\n"  # GREETING from spin.toml


def test_post_body_and_headers_go_both_ways(echo: HttpComponentRunner) -> None:
    sent = (("X-Trace", "abc"), ("Accept", "*/*"), ("X-Name", "café"))
    r = serve(echo, request("/echo-py/echo", "POST", b"ping \x00\xff", sent))
    assert r.status == 200
    assert r.body == b"ping \x00\xff"
    headers = dict(r.headers)
    assert headers["x-echo-trace"] == "abc"  # a request header the guest read, sent back
    assert headers["x-echo-name"] == "café"  # non-ASCII bytes survive both ways
    assert "x-echo-accept" not in headers
    assert headers["x-method"] == "POST"


@pytest.mark.parametrize("status", [201, 204, 404, 418, 503])
def test_the_guest_sets_the_status(echo: HttpComponentRunner, status: int) -> None:
    r = serve(echo, request(f"/echo-py/status/{status}"))
    assert r.status == status
    assert ("x-status", "set-by-guest") in r.headers


def test_guest_stdout_and_stderr_become_log_lines(echo: HttpComponentRunner) -> None:
    logs = Logs()
    r = serve(echo, request("/echo-py/print"), logs)
    assert r.body == b"printed\n"
    assert logs.of(LogStream.STDOUT) == ["hello on stdout from echo-py"]
    assert logs.of(LogStream.STDERR) == ["hello on stderr from echo-py"]


def test_the_guest_sees_only_the_manifest_environment(echo: HttpComponentRunner) -> None:
    assert serve(echo, request("/echo-py/env")).body == b"ECHO_NAME=echo-py\n"


def test_a_granted_file_is_readable(echo: HttpComponentRunner) -> None:
    r = serve(echo, request("/echo-py/file"))
    assert r.status == 200
    assert r.body == (SAMPLES / "echo-py" / "static" / "hello.txt").read_bytes()


def test_a_file_outside_the_grants_is_denied_with_a_log_line(echo: HttpComponentRunner) -> None:
    logs = Logs()
    r = serve(echo, request("/echo-py/denied-file"), logs)
    assert r.status == 403
    assert r.body == b"denied: FileNotFoundError\n"
    notes = logs.of(LogStream.SYSTEM)
    assert any("/secret/key.txt" in n and "not granted by `files`" in n for n in notes), notes


def test_outbound_http_to_a_host_not_allowed_is_denied_with_a_log_line(echo: HttpComponentRunner) -> None:
    logs = Logs()
    r = serve(echo, request("/echo-py/outbound", query="url=http://example.com/x"), logs)
    assert r.status == 502
    assert b"HttpRequestDenied" in r.body
    notes = logs.of(LogStream.SYSTEM)
    assert any("http://example.com/x" in n and "allowed_outbound_hosts" in n for n in notes), notes


def _serve_upstream(server: http.server.ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _upstream_handler(
    body_of: Callable[[http.server.BaseHTTPRequestHandler], bytes],
) -> type[http.server.BaseHTTPRequestHandler]:
    """A handler answering every GET with 200 and ``body_of(the request)``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = body_of(self)
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _upstream_handler(lambda h: f"upstream saw {h.path}".encode()))
    for port in _serve_upstream(server):
        yield f"http://127.0.0.1:{port}"


def test_outbound_http_to_an_allowed_host_is_sent(echo: HttpComponentRunner, upstream: str) -> None:
    r = serve(echo, request("/echo-py/outbound", query=f"url={upstream}/from-guest"))
    assert r.status == 200
    assert r.body == b"upstream said 200: upstream saw /from-guest"


class _Ipv6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


@pytest.fixture
def upstream_v6() -> Iterator[int | None]:
    """A server on the IPv6 loopback [::1]; yields its port, or None where this machine has no
    IPv6 loopback (containers often disable it)."""
    try:
        server = _Ipv6Server(("::1", 0), _upstream_handler(lambda h: f"v6 upstream saw {h.path}".encode()))
    except OSError:
        yield None
        return
    yield from _serve_upstream(server)


def test_outbound_http_to_an_allowed_ipv6_literal_is_sent(
    runtime: WasmRuntime, tmp_path: Path, upstream_v6: int | None
) -> None:
    port = upstream_v6 if upstream_v6 is not None else 9  # without IPv6: nothing listens there
    allowed = (f"http://[::1]:{port}",)
    runner = _runner(runtime, "echo-py", tmp_path, RequestLimits(timeout_s=120), allowed)
    r = serve(runner, request("/echo-py/outbound", query=f"url=http://[::1]:{port}/v6"))
    if upstream_v6 is not None:
        assert r.status == 200, r.body
        assert r.body == b"upstream said 200: v6 upstream saw /v6"
    else:  # allowed, so it was dialled (and could not connect), not denied
        assert r.status != 200 and b"HttpRequestDenied" not in r.body, r.body
    # the same address on another port, and another address, stay denied
    for url in (f"http://[::1]:{port + 1}/x", f"http://[::2]:{port}/x", "http://127.0.0.1/x"):
        r = serve(runner, request("/echo-py/outbound", query=f"url={url}"))
        assert r.status == 502 and b"HttpRequestDenied" in r.body, (url, r.body)


def test_an_explicit_port_0_is_not_the_default_port(runtime: WasmRuntime, tmp_path: Path) -> None:
    """An allowed "http://127.0.0.1" means port 80 only: a request to 127.0.0.1:0 is denied, not sent to 80."""
    runner = _runner(runtime, "echo-py", tmp_path, RequestLimits(timeout_s=120), ("http://127.0.0.1",))
    r = serve(runner, request("/echo-py/outbound", query="url=http://127.0.0.1:0/x"))
    assert r.status == 502 and b"HttpRequestDenied" in r.body, r.body


def test_port_ranges_and_cidr_networks_allow_outbound_http(
    runtime: WasmRuntime, tmp_path: Path, upstream: str
) -> None:
    """Entries the manifest accepts (Spin's port ranges, end excluded, and CIDR networks) are
    matched as Spin does, not misread (a range made the host call raise)."""
    port = int(upstream.rsplit(":", 1)[1])
    cases = [
        (f"http://127.0.0.1:{port}..{port + 1}", True),
        ("http://127.0.0.0/8:*", True),
        (f"http://127.0.0.0/8:{port}", True),
        (f"http://127.0.0.1:{port - 1}..{port}", False),
        ("http://10.0.0.0/8:*", False),
    ]
    for i, (entry, ok) in enumerate(cases):
        runner = _runner(runtime, "echo-py", tmp_path / str(i), RequestLimits(timeout_s=120), (entry,))
        r = serve(runner, request("/echo-py/outbound", query=f"url={upstream}/ok"))
        if ok:
            assert (r.status, r.body) == (200, b"upstream said 200: upstream saw /ok"), (entry, r.body)
        else:
            assert r.status == 502 and b"HttpRequestDenied" in r.body, (entry, r.body)


@pytest.fixture
def host_upstream() -> Iterator[str]:
    """Answers with every Host header it received, one per line."""
    handler = _upstream_handler(lambda h: "\n".join(h.headers.get_all("host") or []).encode())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for port in _serve_upstream(server):
        yield f"127.0.0.1:{port}"


@pytest.mark.parametrize("name", ["host", "Host"])
def test_a_host_header_from_the_guest_is_not_sent_twice(
    echo: HttpComponentRunner, host_upstream: str, name: str
) -> None:
    """One Host header on the wire, for the request's authority, as in Spin (the guest's is dropped)."""
    query = f"url=http://{host_upstream}/h&header={name}:elsewhere.example&header=x-other:kept"
    r = serve(echo, request("/echo-py/outbound", query=query))
    assert r.status == 200, r.body
    assert r.body == f"upstream said 200: {host_upstream}".encode()


@pytest.fixture
def dripping_upstream() -> Iterator[str]:
    """Answers with a body of one byte every 50 ms for 10 s: each read is quick, the whole is not."""
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("connection", "close")
            self.end_headers()
            for _ in range(200):
                if stop.wait(0.05):
                    return
                self.wfile.write(b".")
                self.wfile.flush()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    stop.set()
    server.shutdown()
    server.server_close()


def test_a_slow_upstream_cannot_hold_a_request_past_its_deadline(
    echo_strict: HttpComponentRunner, dripping_upstream: str
) -> None:
    import time

    logs = Logs()
    started = time.monotonic()
    try:  # the guest may still answer (a 502) in the tick before its own deadline hits
        r, _ = echo_strict.handle(request("/echo-py/outbound", query=f"url={dripping_upstream}/slow"), logs)
        assert r.status == 502 and b"ConnectionTimeout" in r.body, r.body
    except GuestError as err:
        assert err.reason.startswith("timed out"), err.reason
    assert time.monotonic() - started < 5, "the 1 s deadline did not stop the outbound request"
    assert any("outbound HTTP" in n and "timed out" in n for n in logs.of(LogStream.SYSTEM)), logs.lines


def test_a_trap_mid_response_fails_that_request_only(echo: HttpComponentRunner) -> None:
    logs = Logs()
    with pytest.raises(GuestError) as info:
        echo.handle(request("/echo-py/trap"), logs)
    assert info.value.reason.startswith("trapped")
    assert any("fails mid-response on purpose" in line for line in logs.of(LogStream.STDERR))
    assert serve(echo, request("/echo-py/status/200")).status == 200


def test_an_ungranted_store_is_access_denied_with_a_log_line_naming_it(echo: HttpComponentRunner) -> None:
    # echo-py grants no key-value store: Spin answers access-denied (echo-py does not catch
    # it, so its request fails); the log line says which store and the key to add.
    logs = Logs()
    with pytest.raises(GuestError):
        echo.handle(request("/echo-py/kv"), logs)
    assert any("key-value store `default` opened but not granted" in n for n in logs.of(LogStream.SYSTEM))
    assert serve(echo, request("/echo-py/status/200")).status == 200


def test_every_request_gets_a_fresh_instance(echo: HttpComponentRunner) -> None:
    assert [serve(echo, request("/echo-py/count")).body for _ in range(3)] == [b"1\n"] * 3


def test_an_endless_loop_hits_the_deadline(echo_strict: HttpComponentRunner) -> None:
    with pytest.raises(GuestError) as info:
        echo_strict.handle(request("/echo-py/loop"), Logs())
    assert "timed out after 1s" in info.value.reason
    assert serve(echo_strict, request("/echo-py/status/200")).status == 200


def test_allocating_without_bound_hits_the_memory_cap(echo_strict: HttpComponentRunner) -> None:
    with pytest.raises(GuestError) as info:
        echo_strict.handle(request("/echo-py/oom"), Logs())
    assert "out of memory" in info.value.reason and "64 MiB" in info.value.reason
    assert serve(echo_strict, request("/echo-py/status/200")).status == 200


TEN_MB = 10 * 1024 * 1024


def test_a_10_mb_request_body_comes_back_byte_exact(echo: HttpComponentRunner) -> None:
    data = bytes(range(251)) * (TEN_MB // 251 + 1)
    data = data[:TEN_MB]
    r = serve(echo, request("/echo-py/echo", "POST", data))
    assert len(r.body) == TEN_MB
    assert r.body == data


def test_a_10_mb_response_is_byte_exact(echo: HttpComponentRunner) -> None:
    r = serve(echo, request("/echo-py/big", query=f"size={TEN_MB}"))
    expected = (bytes(range(256)) * (TEN_MB // 256 + 1))[:TEN_MB]
    assert len(r.body) == TEN_MB
    assert r.body == expected


def test_requests_on_several_threads_keep_their_own_state(echo: HttpComponentRunner) -> None:
    """Each request's handles, body and log live in its own context: run four threads at once,
    with traps mixed in, and every answer must be its own request's."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> tuple[int, bool]:
        if i % 5 == 4:
            try:
                echo.handle(request("/echo-py/trap"), Logs())
            except GuestError as err:
                return i, err.reason.startswith("trapped")
            return i, False
        body = f"request {i} ".encode() * (i + 1)
        logs = Logs()
        r = serve(echo, request("/echo-py/echo", "POST", body, (("x-n", str(i)),)), logs)
        return i, r.body == body and dict(r.headers)["x-echo-n"] == str(i)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(40)))
    assert all(ok for _, ok in results), [i for i, ok in results if not ok]


def test_a_write_over_the_wasi_io_limit_is_refused_as_spin_would(echo: HttpComponentRunner) -> None:
    logs = Logs()
    with pytest.raises(GuestError) as info:
        echo.handle(request("/echo-py/oversized"), logs)
    assert "blocking-write-and-flush of 8192 bytes" in info.value.reason
    assert any("at most 4096" in n for n in logs.of(LogStream.SYSTEM))


def test_a_wasi_http_proxy_component_is_served_too(runtime: WasmRuntime, tmp_path: Path) -> None:
    """The other world: plain wasi:http/proxy@0.2.0 (no fermyon:spin imports at all)."""
    wasm = sample_wasm("hello-py", world="wasi:http/proxy@0.2.0")
    app = load_app(SAMPLES / "hello-py" / "spin.toml")
    runner = build_runner(
        component=app.components["hello-py"],
        wasm_path=wasm,
        runtime=runtime,
        cache=CompileCache(COMPILED, runtime.config_key),
        limits=RequestLimits(timeout_s=120),
    )
    assert not any(name.startswith("fermyon:") for name in runner.world.imports)
    assert serve(runner, request("/hello-py/proxy")).body == b"Hello from hello-py at /hello-py/proxy\n"


def test_a_trapped_request_frees_its_store_at_once(echo: HttpComponentRunner) -> None:
    """Not at the next garbage collection: the pooling allocator has slots for a few dozen
    component instances, and trapped requests between two collections used to exhaust them."""
    import gc

    gc.collect()
    gc.disable()
    try:
        for _ in range(40):
            with pytest.raises(GuestError) as info:
                echo.handle(request("/echo-py/trap"), Logs())
            assert info.value.reason.startswith("trapped: wasm trap"), info.value.reason
        assert serve(echo, request("/echo-py/status/200")).status == 200
    finally:
        gc.enable()
