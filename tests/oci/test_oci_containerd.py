"""What containerd and Docker make of the image: pulled from the real registry, or imported from the archive.

The Spin shim runs under containerd, which pulls the node's platform from the index and unpacks
the layers; these tests prove that path with the real ``ctr`` and ``docker``.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from devenv.model import BuiltApp
from devenv.oci import OciImage, RegistryClient, normalize_ref, package_app, write_oci_archive
from tests.oci.conftest import Ctr, Registry, unique_repo


def pushed(registry: Registry, shop: BuiltApp, tmp_path: Path) -> tuple[OciImage, str]:
    image = package_app(shop, tmp_path / "store")
    repo = unique_repo("shop")
    with RegistryClient(registry.url) as client:
        client.push(image, repo, image.tag)
    return image, f"{registry.host}/{repo}:{image.tag}"


def assert_containerd_has(ctr: Ctr, image: OciImage, ref: str) -> None:
    """``ctr images ls`` lists ``ref`` at the index digest for both platforms; content matches."""
    rows = [line.split() for line in ctr.text("images", "ls").splitlines()[1:]]
    row = next((r for r in rows if r[0] == ref), None)
    assert row is not None, f"{ref} not in ctr images ls: {rows}"
    assert row[2] == image.digest
    platforms = next(col for col in row if col.startswith("linux/")).split(",")
    assert sorted(platforms) == ["linux/amd64", "linux/arm64"]

    index = json.loads(ctr.content(image.digest))
    amd64 = next(m for m in index["manifests"] if m["platform"] == {"os": "linux", "architecture": "amd64"})
    manifest = json.loads(ctr.content(amd64["digest"]))
    assert [layer["digest"] for layer in manifest["layers"]] == [
        lyr.descriptor.digest for lyr in image.layers
    ]
    config = json.loads(ctr.content(manifest["config"]["digest"]))
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["config"]["Entrypoint"] == ["/"]
    # The layers themselves are in containerd's content store, byte for byte.
    manifest_layer = image.layers[-1]
    assert ctr.content(manifest_layer.descriptor.digest) == image.read_blob(manifest_layer.descriptor.digest)


@pytest.mark.registry
def test_ctr_pulls_the_pushed_image(registry: Registry, shop: BuiltApp, tmp_path: Path, ctr: Ctr) -> None:
    image, ref = pushed(registry, shop, tmp_path)
    ctr.run("images", "pull", "--plain-http", ref)
    assert_containerd_has(ctr, image, ref)
    # Unpacked for this host: complete, and the rootfs snapshot (named by the chain of diff_ids)
    # is committed, so containerd could hand it to the shim.
    check = next(line for line in ctr.text("images", "check").splitlines() if line.startswith(ref))
    assert "complete" in check and check.split()[-1] == "true", check
    snapshots = ctr.text("snapshots", "ls")
    assert chain_id([layer.diff_id for layer in image.layers]) in snapshots


def chain_id(diff_ids: list[str]) -> str:
    chain = diff_ids[0]
    for diff_id in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
    return chain


def test_ctr_imports_the_archive_under_the_name_pods_use(shop: BuiltApp, tmp_path: Path, ctr: Ctr) -> None:
    image = package_app(shop, tmp_path / "store")
    ref = f"shop:{image.tag}"
    tar_path = write_oci_archive(image, tmp_path / "out" / "shop.tar", ref)
    # k3d's tools node runs exactly this on every node.
    ctr.run("images", "import", "--all-platforms", str(tar_path))
    assert_containerd_has(ctr, image, normalize_ref(ref))
    assert normalize_ref(ref) == f"docker.io/library/shop:{image.tag}"


def test_archive_is_deterministic_and_holds_every_blob(shop: BuiltApp, tmp_path: Path) -> None:
    image = package_app(shop, tmp_path / "store")
    a = write_oci_archive(image, tmp_path / "a.tar", "shop:dev")
    b = write_oci_archive(image, tmp_path / "b.tar", "shop:dev")
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tar:
        names = set(tar.getnames())
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    expected = {
        image.digest,
        *(m.digest for m in image.manifests),
        *(d.digest for d in image.blob_descriptors()),
    }
    assert {f"blobs/sha256/{d.split(':')[1]}" for d in expected} <= names
    assert {"oci-layout", "index.json", "manifest.json"} <= names
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/library/shop:dev"


def test_normalize_ref() -> None:
    assert normalize_ref("hello") == "docker.io/library/hello:latest"
    assert normalize_ref("team/hello:1") == "docker.io/team/hello:1"
    assert normalize_ref("k3d-reg:5000/hello:1") == "k3d-reg:5000/hello:1"
    assert normalize_ref("localhost/hello:1") == "localhost/hello:1"


@pytest.mark.docker
@pytest.mark.registry
def test_docker_pulls_the_pushed_image(
    registry: Registry, shop: BuiltApp, tmp_path: Path, docker_client
) -> None:  # type: ignore[no-untyped-def]
    image, ref = pushed(registry, shop, tmp_path)
    pulled = docker_client.images.pull(ref)  # Docker treats 127.0.0.1 registries as insecure
    try:
        attrs = pulled.attrs
        assert (attrs["Os"], attrs["Architecture"]) == ("linux", "amd64")
        assert attrs["RootFS"]["Layers"] == [layer.diff_id for layer in image.layers]
        assert attrs["Config"]["Entrypoint"] == ["/"]
        assert any(d.endswith(image.digest) for d in attrs["RepoDigests"])
    finally:
        docker_client.images.remove(ref, force=True)


@pytest.mark.docker
def test_docker_loads_the_archive(shop: BuiltApp, tmp_path: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    image = package_app(shop, tmp_path / "store")
    ref = f"wasmdev-test-shop:{image.tag}"
    tar_path = write_oci_archive(image, tmp_path / "shop.tar", ref)
    loaded = docker_client.images.load(tar_path.read_bytes())
    try:
        assert [t for img in loaded for t in img.tags] == [ref]
        assert loaded[0].attrs["RootFS"]["Layers"] == [layer.diff_id for layer in image.layers]
    finally:
        docker_client.images.remove(ref, force=True)
