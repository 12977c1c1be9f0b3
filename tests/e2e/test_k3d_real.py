"""Opt-in, against the real thing: `pytest -m k3d` on a machine with Docker and k3d ≥ 5.8.3.

Creates its own cluster (``wasmdev-e2e``, free ports, a kubeconfig in the test's folder, so no
cluster or kubeconfig of yours is touched), builds and deploys every sample app with the Spin shim
node image, checks each answers through the host port, edits one and sees the new response, reads
pod logs and metrics (or the reason metrics are missing), and deletes everything it made.
Skipped, with the reason, where Docker or k3d is missing. Slow: the node image pull and the first
C and Python builds take minutes on a cold machine.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devenv.config import ClusterSettings, Settings
from devenv.engine.builder import Builder
from devenv.errors import TargetUnavailable
from devenv.manifest import load_app
from devenv.model import AppSpec, LogStream
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.cluster.bootstrap import check_k3d, ping_docker
from devenv.targets.cluster.commands import cluster_delete
from devenv.targets.cluster.ingress_check import loopback_target
from devenv.targets.cluster.k3d import K3dCli
from devenv.targets.cluster.k3d_target import K3dTarget
from devenv.targets.cluster.resources import app_host

pytestmark = pytest.mark.k3d

SAMPLES = Path(__file__).resolve().parents[2] / "sample-apps"
NAME = "wasmdev-e2e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_docker_and_k3d(kubeconfig: Path) -> None:
    try:
        ping_docker()
    except TargetUnavailable as err:
        pytest.skip(f"needs a Docker engine: {err.what} (fix: {err.fix})")
    if shutil.which("k3d") is None:
        pytest.skip(
            "needs k3d ≥ 5.8.3 on PATH: curl -s https://raw.githubusercontent.com/k3d-io/k3d/main/install.sh | bash"
        )
    try:
        asyncio.run(check_k3d(K3dCli(kubeconfig)))
    except TargetUnavailable as err:
        pytest.skip(f"{err.what} (fix: {err.fix})")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Store, K3dTarget, Settings]]:
    cluster_settings = ClusterSettings(
        name=NAME,
        registry_name=f"{NAME}-registry",
        http_port=free_port(),
        registry_port=free_port(),
        kubeconfig=tmp_path / f"kubeconfig-{NAME}.yaml",
    )
    await asyncio.to_thread(require_docker_and_k3d, cluster_settings.kubeconfig)
    settings = Settings(root=tmp_path, cluster=cluster_settings)
    store = Store()
    target = K3dTarget(store, settings, image_store_dir=tmp_path / "oci")
    try:
        await target.start()
        yield store, target, settings
    finally:
        await target.close()
        assert await cluster_delete(cluster_settings, print) == 0
        assert await K3dCli(cluster_settings.kubeconfig).get_cluster(NAME) is None


def copy_samples(dest: Path) -> list[Path]:
    manifests = []
    for sample in sorted(SAMPLES.iterdir()):
        if (sample / "spin.toml").exists():
            shutil.copytree(sample, dest / sample.name, ignore=shutil.ignore_patterns("__pycache__"))
            manifests.append(dest / sample.name / "spin.toml")
    return manifests


def route_url(spec: AppSpec, http_port: int, suffix: str = "") -> str:
    route = spec.http_triggers[0].route
    path = f"{route.prefix.rstrip('/')}/{suffix}" if route.wildcard else route.path
    return f"http://{app_host(spec.name)}:{http_port}{path}"  # the Ingress host rule's name


def get_until(url: str, predicate, timeout: float = 120.0) -> str:  # type: ignore[no-untyped-def]
    """GET until the body satisfies ``predicate``: Traefik picks new endpoints up asynchronously."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            # Python's resolver may not map *.localhost to loopback (glibc without
            # nss-myhostname does not): connect to 127.0.0.1 and send the name as Host.
            target, headers = loopback_target(url)
            with urllib.request.urlopen(urllib.request.Request(target, headers=headers), timeout=5) as resp:
                last = resp.read().decode(errors="replace")
                if predicate(last):
                    return last
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(1)
    raise AssertionError(f"{url}: never got the expected response; last: {last[:300]}")


async def test_create_deploy_edit_observe_delete(
    cluster: tuple[Store, K3dTarget, Settings], tmp_path: Path
) -> None:
    store, target, settings = cluster
    port = settings.cluster.http_port
    builder = Builder(store)
    specs: dict[str, AppSpec] = {}
    for manifest in copy_samples(tmp_path / "apps"):
        spec = load_app(manifest)
        store.dispatch(a.AppLoaded(spec))
        built = await builder.build(spec)
        result = await target.deploy(built)
        assert result.urls == (f"http://{spec.name}.localhost:{port}/",)
        specs[spec.name] = spec

    for spec in specs.values():  # every sample answers through k3d's loadbalancer and Traefik
        await asyncio.to_thread(get_until, route_url(spec, port), lambda body: bool(body))

    # edit → rebuild → rollout → the new content is served
    wat = specs["hello-wat"]
    (wat.root / "greeting.txt").write_text("edited by the k3d e2e test\n")
    await target.deploy(await builder.build(load_app(wat.manifest_path)))
    body = await asyncio.to_thread(
        get_until, route_url(wat, port, "file?greeting.txt"), lambda b: "edited by the k3d e2e test" in b
    )
    assert "edited by the k3d e2e test" in body

    # pod logs arrive in the same log store as the local target's
    deadline = time.monotonic() + 60
    while not any(line.stream is LogStream.POD for line in store.logs.tail(10_000)):
        assert time.monotonic() < deadline, "no pod log lines reached the store"
        await asyncio.sleep(1)

    # metrics: samples from metrics.k8s.io, or the reason they are missing (a known shim gap)
    deadline = time.monotonic() + 120
    while True:
        sampled = any(store.metrics.samples(name) for name in specs)
        explained = any(store.state.apps[name].metrics_note for name in specs)
        if sampled or explained:
            break
        assert time.monotonic() < deadline, "neither metrics nor a reason for their absence"
        await asyncio.sleep(2)
