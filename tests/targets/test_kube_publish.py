"""The kube target's real packager: package the app, push it to a real distribution registry
(Debian's docker-registry) under the configured path, and deploy the pushed tag to the fake cluster."""

from __future__ import annotations

import json
import urllib.request

import pytest

from devenv.store.store import Store
from devenv.targets.cluster.kube import oci_packager, split_registry
from tests.fakes.apiserver import fake_apiserver_fixture  # noqa: F401 - fixture
from tests.oci import conftest as oci_fixtures
from tests.targets.kube_helpers import make_target

registry = oci_fixtures.registry

pytestmark = pytest.mark.registry


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("localhost:5001", ("localhost:5001", "")),
        ("registry.team:5000/wasm/apps", ("registry.team:5000", "wasm/apps")),
        ("http://10.0.0.5:5000/dev/", ("http://10.0.0.5:5000", "dev")),
    ],
)
def test_split_registry(text, parts):
    assert split_registry(text) == parts


async def test_deploy_pushes_to_the_registry_and_pods_pull_the_same_tag(fake_apiserver, registry, tmp_path):
    built = oci_fixtures.write_app(tmp_path / "app")
    store = Store()
    packager = oci_packager(tmp_path / "oci-store")
    target = make_target(
        fake_apiserver,
        store,
        packager=packager,
        push_registry=f"{registry.host}/team",
        pull_registry="team-registry:5000/team",
    )
    try:
        await target.deploy(built)
        again = packager(built, f"{registry.host}/team")  # the same build: same tag, nothing new to send
    finally:
        await target.close()

    with urllib.request.urlopen(f"{registry.url}/v2/team/shop/tags/list") as resp:
        tags = json.load(resp)["tags"]
    assert tags == [again.tag]
    dep = fake_apiserver.cluster.get("deployments", "default", "shop")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"team-registry:5000/team/shop:{again.tag}"


def test_publishing_prunes_the_local_store_now_and_then(registry, tmp_path):
    import os
    import time

    from devenv.oci import BlobStore
    from devenv.targets.cluster.publish import PRUNE_EVERY

    built = oci_fixtures.write_app(tmp_path / "app")
    store_dir = tmp_path / "oci-store"
    packager = oci_packager(store_dir)
    packager(built, registry.host)
    store = BlobStore(store_dir)
    orphan = store.put_bytes(b"a layer of a build long gone", "application/octet-stream")
    an_hour_ago = time.time() - 3600
    os.utime(store.path(orphan.digest), (an_hour_ago, an_hour_ago))
    for _ in range(PRUNE_EVERY - 2):
        packager(built, registry.host)
    assert store.has(orphan.digest)  # not yet: pruning runs every PRUNE_EVERY publishes
    packager(built, registry.host)
    assert not store.has(orphan.digest)
