"""What ``wasmdev up`` on a cluster relies on around a rollout: the engine's Prober reaches
``http://NAME.localhost:PORT/`` URLs (routed by Host header, as Traefik does), and the k3d target
waits for the first answer through the host port after each rollout. The CLI runs of the whole
path are in tests/e2e/test_cli_cluster.py."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devenv.config import ClusterSettings
from devenv.engine.samplers import PROBE_FAILED_STATUS, PROBE_HEADER, Prober
from devenv.model import AppSpec
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.cluster.k3d_target import INGRESS_CHECK_S
from tests.fakes import apiserver
from tests.fakes.apiserver import FakeApiServer
from tests.fakes.k3d import harness
from tests.fakes.k3d.harness import FakeK3d
from tests.oci import conftest as oci_fixtures
from tests.targets.kube_helpers import FAST_BOOTSTRAP, make_k3d_target

fake_apiserver = apiserver.fake_apiserver
fake_k3d = harness.fake_k3d
cluster_settings = harness.cluster_settings


class _HostRouted(ThreadingHTTPServer):
    """Answers 200 only for the host it routes (``shop.localhost:PORT``), 404 for any other name."""

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # (Host, path, probe header)
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def routed_host(self) -> str:
        return f"shop.localhost:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _HostRouted

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        host = self.headers.get("Host", "")
        self.server.seen.append((host, self.path, self.headers.get(PROBE_HEADER, "")))
        body = b"shop" if host == self.server.routed_host else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def routed() -> Iterator[_HostRouted]:
    server = _HostRouted()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def serving(store: Store, app: str, url: str) -> None:
    store.dispatch(a.AppLoaded(AppSpec(name=app, manifest_path=Path(f"/ws/{app}/spin.toml"))))
    store.dispatch(a.VersionServing(app=app, digest="sha256:" + "0" * 64, urls=(url,), ts=time.time()))


async def wait_for_probes(store: Store, apps: list[str]) -> None:
    prober = asyncio.create_task(Prober(store, interval_s=0.02, timeout_s=5.0).run())
    try:
        for _ in range(500):
            if all(any(r.probe for r in store.metrics.requests(app)) for app in apps):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"no probe record for each of {apps}")
    finally:
        prober.cancel()


async def test_prober_reaches_localhost_names_through_loopback_with_the_host_header(
    routed: _HostRouted,
) -> None:
    port = routed.server_address[1]
    store = Store()
    serving(store, "shop", f"http://shop.localhost:{port}/")
    serving(store, "cart", f"http://cart.localhost:{port}/")  # a name this ingress does not route

    await wait_for_probes(store, ["shop", "cart"])

    shop = next(r for r in store.metrics.requests("shop") if r.probe)
    assert shop.status == 200 and shop.path == "/" and shop.method == "GET"
    cart = next(r for r in store.metrics.requests("cart") if r.probe)
    assert cart.status == 404  # an HTTP answer (routed by Host), not a resolver failure
    assert (routed.routed_host, "/", "1") in routed.seen
    assert (f"cart.localhost:{port}", "/", "1") in routed.seen


async def test_a_localhost_name_on_a_closed_port_is_a_failed_probe() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = Store()
    serving(store, "shop", f"http://shop.localhost:{port}/")

    await wait_for_probes(store, ["shop"])

    assert next(r for r in store.metrics.requests("shop") if r.probe).status == PROBE_FAILED_STATUS


# --- the k3d target's post-rollout check ---------------------------------------------------------


async def test_k3d_rollouts_wait_for_an_answer_through_the_host_port(
    fake_k3d: FakeK3d,
    cluster_settings: ClusterSettings,
    fake_apiserver: FakeApiServer,
    routed: _HostRouted,
    tmp_path: Path,
) -> None:
    # `routed` plays k3d's serverlb + Traefik on the cluster's HTTP host port; images go in with
    # (the fake) `k3d image import`, as with `registry_name = ""`.
    cluster = dataclasses.replace(cluster_settings, http_port=routed.server_address[1], registry_name="")
    # The stand-in holds the port k3d's serverlb would bind, so the free-port check must not see it.
    options = dataclasses.replace(FAST_BOOTSTRAP, port_in_use=lambda _port, _host: False)
    target = make_k3d_target(fake_k3d, cluster, tmp_path, Store(), options)
    await target.start()
    try:
        assert target.kube.ingress_check_s == INGRESS_CHECK_S > 0
        result = await target.deploy(oci_fixtures.write_app(tmp_path / "shop"))
    finally:
        await target.close()

    assert result.urls == (f"http://{routed.routed_host}/",)
    assert (routed.routed_host, "/.well-known/spin/health", "") in routed.seen
    assert not any("does not answer" in note for note in result.notes)


async def test_k3d_rollout_with_nothing_on_the_host_port_is_a_note(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    # The fake API server serves no app traffic and nothing listens on the HTTP port: the check
    # must end in a note (not a failed deploy, not a 30 s wait for a connection refused).
    cluster = dataclasses.replace(cluster_settings, registry_name="")
    store = Store()
    target = make_k3d_target(fake_k3d, cluster, tmp_path, store)
    await target.start()
    try:
        result = await target.deploy(oci_fixtures.write_app(tmp_path / "shop"))
    finally:
        await target.close()

    notes = [n for n in result.notes if "does not answer" in n]
    assert len(notes) == 1
    assert f"nothing accepts connections on 127.0.0.1:{cluster.http_port}" in notes[0]
    assert fake_apiserver.cluster.get("deployments", "default", "shop") is not None
