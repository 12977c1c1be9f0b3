"""The k3d target end to end on this machine: fake k3d, fake API server (real HTTP, real client),
the real OCI packager, and a real distribution registry standing where k3d's registry would be."""

from __future__ import annotations

import dataclasses
import urllib.request
from pathlib import Path

import pytest

from devenv.config import ClusterSettings
from devenv.errors import DeployError, TargetUnavailable
from devenv.model import StepStatus
from devenv.store.store import Store
from devenv.targets.base import Target
from devenv.targets.cluster.k3d_target import IMPORTED_IMAGE_HOST
from tests.fakes import apiserver
from tests.fakes.apiserver import FakeApiServer
from tests.fakes.k3d import harness
from tests.fakes.k3d.harness import FakeK3d
from tests.oci import conftest as oci_fixtures
from tests.targets.kube_helpers import make_k3d_target

fake_apiserver = apiserver.fake_apiserver
fake_k3d = harness.fake_k3d
cluster_settings = harness.cluster_settings
registry = oci_fixtures.registry


def deployed_image(server: FakeApiServer, name: str) -> str:
    deployment = server.cluster.get("deployments", "default", name)
    assert deployment is not None, f"no Deployment {name}"
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


async def test_pushes_to_the_host_port_and_pods_pull_the_in_cluster_name(
    fake_k3d: FakeK3d,
    cluster_settings: ClusterSettings,
    fake_apiserver: FakeApiServer,
    registry: oci_fixtures.Registry,
    tmp_path: Path,
) -> None:
    # The real distribution registry listens where `k3d registry create` would have put k3d's.
    port = int(registry.host.rsplit(":", 1)[1])
    cluster = dataclasses.replace(cluster_settings, registry_port=port)
    await fake_k3d.cli(cluster.kubeconfig).create_registry(cluster.registry_name, port)
    store = Store()
    target = make_k3d_target(fake_k3d, cluster, tmp_path, store)
    assert isinstance(target, Target)

    await target.start()
    try:
        result = await target.deploy(oci_fixtures.write_app(tmp_path / "shop"))
    finally:
        await target.close()

    image = deployed_image(fake_apiserver, "shop")
    assert image.startswith("k3d-wasmdev-registry:5000/shop:")
    tag = image.rsplit(":", 1)[1]
    request = urllib.request.Request(
        f"{registry.url}/v2/shop/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
        },
    )
    with urllib.request.urlopen(request, timeout=5) as resp:  # pushed over the host port, same tag
        assert resp.status == 200
    assert result.urls == (f"http://shop.localhost:{cluster.http_port}/",)
    keys = [s.key for s in store.state.bootstrap]
    assert keys[:9] == [
        "docker",
        "k3d",
        "ports",
        "nodeimage",
        "registry",
        "cluster",
        "kubeconfig",
        "nodes",
        "runtimeclass",
    ]
    assert "kube-api" in keys  # then the kube target's own start steps
    assert fake_k3d.calls_of("image", "import") == []


async def test_without_a_registry_images_go_in_with_k3d_image_import(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    cluster = dataclasses.replace(cluster_settings, registry_name="")
    store = Store()
    target = make_k3d_target(fake_k3d, cluster, tmp_path, store)

    await target.start()
    try:
        await target.deploy(oci_fixtures.write_app(tmp_path / "shop"))
    finally:
        await target.close()

    image = deployed_image(fake_apiserver, "shop")
    assert image.startswith(f"{IMPORTED_IMAGE_HOST}/shop:")
    [call] = fake_k3d.calls_of("image", "import")
    assert call[-2:] == ["-c", "wasmdev"] and call[2].endswith(".tar")
    # what containerd on the node now holds under that name (read from the archive by the fake)
    assert fake_k3d.state()["clusters"]["wasmdev"]["images"] == [image]
    assert not Path(call[2]).exists()  # the archive was temporary
    registry_step = next(s for s in store.state.bootstrap if s.key == "registry")
    assert registry_step.status.value == "skipped"
    assert fake_k3d.calls_of("registry", "create") == []
    assert "--registry-use" not in fake_k3d.calls_of("cluster", "create")[0]


async def test_a_failed_import_is_a_deploy_error_with_a_fix(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    cluster = dataclasses.replace(cluster_settings, registry_name="")
    fake_k3d.fail("image import", "ctr: content digest sha256:00: not found")
    target = make_k3d_target(fake_k3d, cluster, tmp_path, Store())
    await target.start()
    try:
        with pytest.raises(DeployError) as err:
            await target.deploy(oci_fixtures.write_app(tmp_path / "shop"))
    finally:
        await target.close()

    assert "content digest" in err.value.what
    assert "registry_name" in err.value.fix
    assert fake_apiserver.cluster.get("deployments", "default", "shop") is None


async def test_start_fails_cleanly_when_k3d_is_too_old(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, tmp_path: Path
) -> None:
    fake_k3d.env["FAKE_K3D_VERSION"] = "v5.4.9"
    store = Store()
    target = make_k3d_target(fake_k3d, cluster_settings, tmp_path, store)

    with pytest.raises(TargetUnavailable) as err:
        await target.start()
    await target.close()  # safe after a failed start

    assert "needs k3d ≥ v5.8.3" in err.value.what
    failed = [s for s in store.state.bootstrap if s.status is StepStatus.FAILED]
    assert [s.key for s in failed] == ["k3d"] and failed[0].fix == err.value.fix
    assert fake_k3d.state()["clusters"] == {} and fake_k3d.state()["registries"] == {}


async def test_close_closes_the_api_client_it_made(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    target = make_k3d_target(fake_k3d, cluster_settings, tmp_path, Store())
    await target.start()
    client = target.kube.apis.client
    assert client.pool is not None  # the client's worker pool, made on first use
    await target.close()

    # The client was made by the k3d target for this session alone: nobody else will close it.
    assert client._pool is None


async def test_cluster_notes_are_said_once_per_app_not_on_every_redeploy(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    # A cluster made earlier on another HTTP port: the reuse note says so.
    cluster = dataclasses.replace(cluster_settings, registry_name="")
    earlier = make_k3d_target(fake_k3d, cluster, tmp_path, Store())
    await earlier.start()
    await earlier.close()
    moved = dataclasses.replace(cluster, http_port=cluster.http_port + 1)
    target = make_k3d_target(fake_k3d, moved, tmp_path, Store())
    target.ingress_check_s = 0.0
    await target.start()
    try:
        first = await target.deploy(oci_fixtures.write_app(tmp_path / "shop"))
        again = await target.deploy(oci_fixtures.write_app(tmp_path / "shop"))
    finally:
        await target.close()

    assert [n for n in first.notes if "not the configured" in n]
    assert not [n for n in again.notes if "not the configured" in n]
