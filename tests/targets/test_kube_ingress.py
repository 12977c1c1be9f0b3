"""After a rollout, the kube target can wait for the app to answer through the host port, routed by
Host header like Traefik does; a stand-in ingress on 127.0.0.1 plays Traefik here."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devenv.store.store import Store
from devenv.targets.cluster.ingress_check import loopback_target
from tests.fakes.apiserver import fake_apiserver_fixture  # noqa: F401 - fixture
from tests.targets.kube_helpers import build, make_target


class _Ingress(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, not_yet: int) -> None:
        self.hosts: list[str] = []
        self.not_yet = not_yet  # answer 404 this many times first, as Traefik does before it has the route
        super().__init__(("127.0.0.1", 0), _IngressHandler)


class _IngressHandler(BaseHTTPRequestHandler):
    server: _Ingress

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        host = self.headers.get("Host", "")
        self.server.hosts.append(host)
        routed = host.startswith("hello.localhost") and self.path == "/.well-known/spin/health"
        if self.server.not_yet > 0:
            self.server.not_yet -= 1
            routed = False
        self.send_response(200 if routed else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def ingress() -> Iterator[_Ingress]:
    server = _Ingress(not_yet=3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_localhost_names_connect_to_loopback_with_the_host_header():
    assert loopback_target("http://hello.localhost:8081/x?y=1") == (
        "http://127.0.0.1:8081/x?y=1",
        {"Host": "hello.localhost:8081"},
    )
    assert loopback_target("http://apps.example.com/x") == ("http://apps.example.com/x", {})


async def test_deploy_waits_until_the_app_answers_through_the_ingress(fake_apiserver, ingress):
    port = ingress.server_address[1]
    target = make_target(
        fake_apiserver, Store(), http_base_url=f"http://localhost:{port}", ingress_check_s=10.0
    )
    try:
        result = await target.deploy(build("hello", "v1"))
    finally:
        await target.close()
    assert result.urls == (f"http://hello.localhost:{port}/",)
    assert result.notes == ()
    assert ingress.hosts[-1] == f"hello.localhost:{port}" and len(ingress.hosts) == 4


async def test_an_unreachable_ingress_is_a_note_not_a_failure(fake_apiserver):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = Store()
    target = make_target(fake_apiserver, store, http_base_url=f"http://localhost:{port}", ingress_check_s=0.3)
    try:
        result = await target.deploy(build("hello", "v1"))
    finally:
        await target.close()
    (note,) = result.notes
    assert "does not answer yet" in note and "host port" in note
