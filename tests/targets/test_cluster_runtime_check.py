"""Deploys to the k3d target are checked against the Spin its nodes run before anything is
packaged or rolled out (fake k3d, fake API server, real OCI packaging and `k3d image import`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import wasmtime

from devenv.config import ClusterSettings
from devenv.errors import DeployError
from devenv.model import NodeRuntime
from devenv.store.store import Store
from devenv.targets.cluster.node_image import newest_shim_for
from tests.fakes import apiserver
from tests.fakes.apiserver import FakeApiServer
from tests.fakes.k3d import harness
from tests.fakes.k3d.harness import FakeK3d
from tests.oci import conftest as oci_fixtures
from tests.targets.kube_helpers import FAST_BOOTSTRAP, make_k3d_target

fake_apiserver = apiserver.fake_apiserver
fake_k3d = harness.fake_k3d
cluster_settings = harness.cluster_settings


def http_component(export: str) -> bytes:
    return bytes(
        wasmtime.wat2wasm(
            f'(component (component $c) (instance $i (instantiate $c)) (export "{export}" (instance $i)))'
        )
    )


RC = "wasi:http/handler@0.3.0-rc-2026-03-15"
P2 = "wasi:http/incoming-handler@0.2.0"


async def test_a_spin_4_component_on_a_spin_3_node_is_refused_before_rollout(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    cluster = dataclasses.replace(cluster_settings, registry_name="")  # the published v0.24.0 image
    store = Store()
    target = make_k3d_target(fake_k3d, cluster, tmp_path, store)
    await target.start()
    try:
        assert store.state.node_runtime == NodeRuntime(image=cluster.image, shim="v0.24.0", spin="3.6.3")
        with pytest.raises(DeployError) as err:
            await target.deploy(oci_fixtures.write_app(tmp_path / "shop", api=http_component(RC)))
    finally:
        await target.close()
    message = str(err.value)
    assert "this node runs Spin 3.6.3 (shim v0.24.0)" in message
    assert "rebuild the node with `wasmdev cluster image --shim v0.25.1` and recreate the cluster" in message
    assert f"component api needs Spin 4.0 or later (it exports {RC})" in message
    assert fake_k3d.calls_of("image", "import") == []  # nothing packaged or shipped
    assert fake_apiserver.cluster.get("deployments", "default", "shop") is None  # nothing rolled out


async def test_a_spin_3_component_on_a_spin_4_node_deploys(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    cluster = dataclasses.replace(
        cluster_settings, registry_name="", image="wasmdev/k3d-spin:v0.25.1-v1.35.2-k3s1"
    )
    spin4 = NodeRuntime(image=cluster.image, shim="v0.25.1", spin="4.0.1")
    # The image's labels are read by inspect_runtime (test_cluster_image.py builds and reads one);
    # here the seam answers as it would.
    options = dataclasses.replace(FAST_BOOTSTRAP, node_runtime=lambda image: spin4)
    store = Store()
    target = make_k3d_target(fake_k3d, cluster, tmp_path, store, options)
    await target.start()
    try:
        assert store.state.node_runtime == spin4
        result = await target.deploy(
            oci_fixtures.write_app(tmp_path / "shop", api=http_component(P2), web=http_component(RC))
        )
    finally:
        await target.close()
    assert result.urls
    assert fake_apiserver.cluster.get("deployments", "default", "shop") is not None


def test_the_newest_known_shim_is_named_for_each_need() -> None:
    assert newest_shim_for((4, 0)) == "v0.25.1"
    assert newest_shim_for((3, 6)) == "v0.25.1"
    assert newest_shim_for((4, 1)) is None


async def test_a_spin_4_1_component_is_refused_with_the_honest_fix(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, tmp_path: Path
) -> None:
    cluster = dataclasses.replace(cluster_settings, registry_name="")
    spin4 = NodeRuntime(image="x", shim="v0.25.1", spin="4.0.1")
    options = dataclasses.replace(FAST_BOOTSTRAP, node_runtime=lambda image: spin4)
    target = make_k3d_target(fake_k3d, cluster, tmp_path, Store(), options)
    await target.start()
    try:
        with pytest.raises(DeployError) as err:
            await target.deploy(
                oci_fixtures.write_app(tmp_path / "shop", api=http_component("wasi:http/handler@0.3.0"))
            )
    finally:
        await target.close()
    assert "needs Spin 4.1 or later" in err.value.what and "Spin 4.0.1 (shim v0.25.1)" in err.value.what
    assert "no containerd-shim-spin release wasmdev knows embeds Spin 4.1" in err.value.fix
    assert '[local] runtime = "spin"' in err.value.fix


async def test_a_node_of_unknown_spin_deploys_and_says_it_was_not_checked(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    cluster = dataclasses.replace(cluster_settings, registry_name="", image="example.org/my-node:1")
    unknown = NodeRuntime(image=cluster.image, shim=None, spin=None)
    options = dataclasses.replace(FAST_BOOTSTRAP, node_runtime=lambda image: unknown)
    target = make_k3d_target(fake_k3d, cluster, tmp_path, Store(), options)
    await target.start()
    try:
        result = await target.deploy(oci_fixtures.write_app(tmp_path / "shop", api=http_component(RC)))
    finally:
        await target.close()
    assert fake_apiserver.cluster.get("deployments", "default", "shop") is not None
    assert any(
        "which Spin the nodes run is unknown (node image example.org/my-node:1)" in n for n in result.notes
    )
