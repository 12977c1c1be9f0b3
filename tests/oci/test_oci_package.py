"""Packaging without any server: determinism, layering, the rewritten spin.toml, granted files."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import tarfile
import time
import tomllib
from pathlib import Path

import pytest

from devenv.errors import ManifestError
from devenv.model import BuiltApp
from devenv.oci import BlobStore, OciImage, package_app
from devenv.oci.layout import (
    INDEX_KEEP,
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER_GZIP,
    MEDIA_LAYER_TAR,
    MEDIA_MANIFEST,
)
from devenv.oci.toml_writer import dumps_toml
from tests.oci.conftest import WASM_MAGIC, write_app


def layer_members(image: OciImage, title: str) -> dict[str, tarfile.TarInfo]:
    layer = next(layer for layer in image.layers if layer.title == title)
    with tarfile.open(image.blob_path(layer.descriptor.digest)) as tar:
        return {m.name: m for m in tar.getmembers()}


def read_member(image: OciImage, title: str, name: str) -> bytes:
    layer = next(layer for layer in image.layers if layer.title == title)
    with tarfile.open(image.blob_path(layer.descriptor.digest)) as tar:
        f = tar.extractfile(name)
        assert f is not None, f"{name} is not a file in layer {title}"
        return f.read()


def test_same_build_gives_same_digests_in_any_store_at_any_time(tmp_path: Path) -> None:
    built_a = write_app(tmp_path / "a")
    built_b = write_app(tmp_path / "b")  # same content, other directory, files written later
    for path in (tmp_path / "b").rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    image_a = package_app(built_a, tmp_path / "store-a")
    image_b = package_app(built_b, tmp_path / "store-b")
    assert image_a.digest == image_b.digest
    assert image_a.tag == image_b.tag
    assert [layer.descriptor for layer in image_a.layers] == [layer.descriptor for layer in image_b.layers]
    assert image_a.tag == image_a.digest.split(":")[1][:16]


def test_layers_are_normalized_tars(shop: BuiltApp, tmp_path: Path) -> None:
    image = package_app(shop, tmp_path / "store")
    for layer in image.layers:
        with tarfile.open(image.blob_path(layer.descriptor.digest)) as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names), layer.title
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", ""), m.name
            assert m.mode == (0o755 if m.isdir() else 0o644), m.name
        # Uncompressed layers: the diff_id is the blob's own digest.
        assert layer.diff_id == layer.descriptor.digest
        assert layer.descriptor.media_type == MEDIA_LAYER_TAR


def test_one_layer_per_component_then_files_then_manifest(shop: BuiltApp, tmp_path: Path) -> None:
    image = package_app(shop, tmp_path / "store")
    assert [layer.title for layer in image.layers] == [
        "component api",
        "component web",
        "files web",
        "spin.toml",
    ]
    assert set(layer_members(image, "component api")) == {"components", "components/api.wasm"}
    assert read_member(image, "component web", "components/web.wasm") == shop.wasm["web"].read_bytes()
    assert set(layer_members(image, "spin.toml")) == {"spin.toml"}


def test_editing_one_component_changes_only_its_layer(shop: BuiltApp, tmp_path: Path) -> None:
    before = package_app(shop, tmp_path / "store")
    root = shop.spec.root
    edited = write_app(root, api=WASM_MAGIC + b"api v2" * 1000)
    after = package_app(edited, tmp_path / "store")
    changed = [
        b.title
        for a, b in zip(before.layers, after.layers, strict=True)
        if a.descriptor.digest != b.descriptor.digest
    ]
    assert changed == ["component api"]
    assert after.digest != before.digest and after.tag != before.tag


def test_rewritten_spin_toml_points_at_image_paths(shop: BuiltApp, tmp_path: Path) -> None:
    image = package_app(shop, tmp_path / "store")
    manifest = tomllib.loads(read_member(image, "spin.toml", "spin.toml").decode())
    original = tomllib.loads(shop.spec.manifest_path.read_text())

    api, web = manifest["component"]["api"], manifest["component"]["web"]
    assert api["source"] == "components/api.wasm"
    assert web["source"] == "components/web.wasm"
    assert "build" not in api  # host commands mean nothing in the cluster
    assert web["files"] == [{"source": "/files/web", "destination": "/"}]
    assert "exclude_files" not in web  # the shim's direct mounts refuse it; applied at packaging
    # Everything else survives unchanged, including strings that need escaping.
    assert manifest["application"] == original["application"]
    assert manifest["trigger"] == original["trigger"]
    assert manifest["variables"] == original["variables"]
    assert api["variables"] == original["component"]["api"]["variables"]
    assert api["environment"] == {"MODE": "dev"}
    assert api["allowed_outbound_hosts"] == ["https://example.com"]
    # And every source the manifest names is in the image.
    assert "components/api.wasm" in layer_members(image, "component api")


def test_granted_files_sit_at_guest_paths_without_excluded_ones(shop: BuiltApp, tmp_path: Path) -> None:
    image = package_app(shop, tmp_path / "store")
    files = {name for name, m in layer_members(image, "files web").items() if m.isfile()}
    assert files == {
        "files/web/static/index.html",  # glob: keeps its path relative to the app root
        "files/web/static/css/site.css",
        "files/web/www/logo.svg",  # directory placement
        "files/web/etc/app.json",  # file placement
    }
    assert read_member(image, "files web", "files/web/www/logo.svg") == b"<svg/>"


def test_files_that_all_match_nothing_still_give_the_mount_directory(shop: BuiltApp, tmp_path: Path) -> None:
    web = shop.spec.components["web"]
    emptied = dataclasses.replace(web, files=(dataclasses.replace(web.files[0], source="static/*.none"),))
    components = {**shop.spec.components, "web": emptied}
    built = dataclasses.replace(shop, spec=dataclasses.replace(shop.spec, components=components))
    image = package_app(built, tmp_path / "store")
    assert set(layer_members(image, "files web")) >= {"files/web/.wasmdev-empty"}
    manifest = tomllib.loads(read_member(image, "spin.toml", "spin.toml").decode())
    assert manifest["component"]["web"]["files"] == [{"source": "/files/web", "destination": "/"}]


def test_configs_and_index_describe_linux_amd64_and_arm64_with_shared_layers(
    shop: BuiltApp, tmp_path: Path
) -> None:
    image = package_app(shop, tmp_path / "store")
    index = json.loads(image.read_blob(image.digest))
    assert index["mediaType"] == MEDIA_INDEX
    platforms = [(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]]
    assert platforms == [("linux", "amd64"), ("linux", "arm64")]
    layer_lists = []
    for entry in index["manifests"]:
        manifest = json.loads(image.read_blob(entry["digest"]))
        assert manifest["mediaType"] == MEDIA_MANIFEST
        assert manifest["config"]["mediaType"] == MEDIA_CONFIG
        config = json.loads(image.read_blob(manifest["config"]["digest"]))
        assert (config["os"], config["architecture"]) == (
            entry["platform"]["os"],
            entry["platform"]["architecture"],
        )
        assert config["config"]["Entrypoint"] == ["/"]
        assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in image.layers]
        assert "created" not in config  # a timestamp would break determinism
        layer_lists.append(manifest["layers"])
    assert layer_lists[0] == layer_lists[1]


def test_gzip_layers_are_deterministic_and_diff_ids_are_of_the_tar(shop: BuiltApp, tmp_path: Path) -> None:
    image = package_app(shop, tmp_path / "store", compress=True)
    again = package_app(shop, tmp_path / "other-store", compress=True)
    assert image.digest == again.digest
    for layer in image.layers:
        assert layer.descriptor.media_type == MEDIA_LAYER_GZIP
        raw = gzip.decompress(image.read_blob(layer.descriptor.digest))
        assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_warm_package_reuses_blobs(shop: BuiltApp, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = package_app(shop, store)
    blobs = {p.name: p.stat().st_mtime_ns for p in (store / "blobs" / "sha256").iterdir()}
    second = package_app(shop, store)
    assert second.digest == first.digest
    assert {p.name: p.stat().st_mtime_ns for p in (store / "blobs" / "sha256").iterdir()} == blobs
    index = json.loads((store / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [first.digest]


def test_prune_keeps_what_index_json_reaches(shop: BuiltApp, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    image = package_app(shop, store_dir)
    store = BlobStore(store_dir)
    orphan = store.put_bytes(b"left over from an old build", "application/octet-stream")
    assert store.prune() == 1
    assert not store.has(orphan.digest)
    for digest in [
        image.digest,
        *(m.digest for m in image.manifests),
        *(d.digest for d in image.blob_descriptors()),
    ]:
        assert store.has(digest)


def test_missing_wasm_is_a_manifest_error_naming_the_component(shop: BuiltApp, tmp_path: Path) -> None:
    shop.wasm["api"].unlink()
    with pytest.raises(ManifestError) as info:
        package_app(shop, tmp_path / "store")
    assert "component.api.source" in str(info.value)
    assert "fix:" in str(info.value)


def test_files_outside_the_app_are_refused(shop: BuiltApp, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("no")
    web = shop.spec.components["web"]
    from devenv.model import FileMount

    bad_web = dataclasses.replace(web, files=(FileMount("../outside.txt", "/x.txt"),))
    spec = dataclasses.replace(shop.spec, components={**shop.spec.components, "web": bad_web})
    with pytest.raises(ManifestError) as info:
        package_app(dataclasses.replace(shop, spec=spec), tmp_path / "store")
    assert "outside the application directory" in str(info.value)


def test_toml_writer_round_trips_what_tomllib_reads() -> None:
    doc = tomllib.loads(
        """
title = 'x "y" \\\\ z'
n = -3
f = 1.5e10
b = true
empty = []
mixed = [1, 2, 3]
nested = [[1, 2], ["a"]]
inline = { a = 1, "b c" = { d = "e" } }
"key with space" = "tab\\there"

[a.b.c]
v = 1

[[arr]]
x = 1
[arr.sub]
y = 2

[[arr]]
x = 2
"""
    )
    assert tomllib.loads(dumps_toml(doc)) == doc


def built_from_manifest(manifest: Path) -> BuiltApp:
    """Read the manifest with wasmdev's own reader, as the engine does, and 'build' it."""
    from devenv.manifest import load_app

    spec = load_app(manifest)
    wasm = {cid: c.source for cid, c in spec.components.items() if c.source is not None}
    return BuiltApp(spec=spec, digest="sha256:" + "0" * 64, wasm=wasm, built_at=0.0)


def test_inline_components_are_rewritten_where_they_are(tmp_path: Path) -> None:
    root = tmp_path / "inline"
    (root / "target").mkdir(parents=True)
    (root / "target" / "a.wasm").write_bytes(WASM_MAGIC + b"a")
    (root / "target" / "b.wasm").write_bytes(WASM_MAGIC + b"b")
    (root / "public").mkdir()
    (root / "public" / "robots.txt").write_text("User-agent: *")
    (root / "spin.toml").write_text(
        """\
spin_manifest_version = 2
[application]
name = "inline"
[[trigger.http]]
route = "/a/..."
component = { source = "target/a.wasm", files = [{ source = "public", destination = "/" }] }
[[trigger.http]]
route = "/b"
component = "b"
[component.b]
source = "target/b.wasm"
"""
    )
    built = built_from_manifest(root / "spin.toml")
    image = package_app(built, tmp_path / "store")
    manifest = tomllib.loads(read_member(image, "spin.toml", "spin.toml").decode())
    inline_id = next(cid for cid in built.spec.components if cid != "b")
    inline = manifest["trigger"]["http"][0]["component"]
    assert inline["source"] == f"components/{inline_id}.wasm"
    assert inline["files"] == [{"source": f"/files/{inline_id}", "destination": "/"}]
    assert manifest["component"]["b"]["source"] == "components/b.wasm"
    assert read_member(image, f"component {inline_id}", f"components/{inline_id}.wasm") == WASM_MAGIC + b"a"
    assert read_member(image, f"files {inline_id}", f"files/{inline_id}/robots.txt") == b"User-agent: *"


def test_v1_manifests_are_rewritten_in_their_own_shape(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    (root / "hello.wasm").write_bytes(WASM_MAGIC + b"hello")
    (root / "spin.toml").write_text(
        """\
spin_manifest_version = "1"
name = "old"
version = "1.0.0"
trigger = { type = "http", base = "/" }

[[component]]
id = "hello"
source = "hello.wasm"
[component.trigger]
route = "/hello"
"""
    )
    image = package_app(built_from_manifest(root / "spin.toml"), tmp_path / "store")
    manifest = tomllib.loads(read_member(image, "spin.toml", "spin.toml").decode())
    assert manifest["component"][0]["source"] == "components/hello.wasm"
    assert manifest["component"][0]["trigger"] == {"route": "/hello"}
    assert manifest["trigger"] == {"type": "http", "base": "/"}


def test_prune_spares_young_blobs_another_packager_may_be_writing(shop: BuiltApp, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    package_app(shop, store_dir)
    store = BlobStore(store_dir)
    young = store.put_bytes(b"being written by another wasmdev", "application/octet-stream")
    old = store.put_bytes(b"left over from a build long gone", "application/octet-stream")
    an_hour_ago = time.time() - 3600
    os.utime(store.path(old.digest), (an_hour_ago, an_hour_ago))
    assert store.prune(min_age_s=300) == 1
    assert store.has(young.digest) and not store.has(old.digest)


def test_the_store_stays_bounded_over_many_builds(shop: BuiltApp, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    store = BlobStore(store_dir)
    wasm = shop.wasm["api"]
    original = wasm.read_bytes()

    def build(n: int) -> None:  # a new build of one component each time
        wasm.write_bytes(original + n.to_bytes(8, "big"))
        package_app(dataclasses.replace(shop, digest=f"sha256:{n:064x}"), store_dir)

    def blob_count() -> int:
        return sum(1 for p in store.blobs.iterdir() if not p.name.startswith("."))

    for n in range(INDEX_KEEP + 4):
        build(n)
    store.prune()
    steady = blob_count()
    for n in range(INDEX_KEEP + 4, INDEX_KEEP + 12):
        build(n)
    assert blob_count() > steady  # each build left blobs behind...
    store.prune()
    assert blob_count() == steady  # ...and pruning brings the store back to the same size
    assert len(json.loads((store_dir / "index.json").read_text())["manifests"]) == INDEX_KEEP
