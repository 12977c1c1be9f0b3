"""An OCI image in the blob store: an index over one manifest per platform, sharing the layers.

Why an index of linux/amd64 and linux/arm64: the Spin shim runs *rootfs* images through
containerd, which picks the manifest matching the node's platform (see
../shared/reference/k3d-and-spin-shim.md §8). Wasm is architecture-neutral, so both manifests list
the very same layers; only the small config blob (which names the architecture) differs. The cost
is two configs and two manifests of a few hundred bytes each, and arm64 nodes (k3d on Apple
silicon, Graviton, Ampere) run the same tag as amd64 ones.

Why not a single ``wasi/wasm`` manifest, as the shim's published examples are: those run because a
lone manifest is not filtered by platform, but everything else on the way treats the image as
foreign. Docker 20.10 refuses to pull or load a non-linux image, ``ctr images pull``/``import``
select content by the host platform and would not unpack it, and the shim's own CI imports
host-platform (linux/amd64) rootfs images. A linux index is accepted by all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv.oci.layout import (
    ANNOTATION_REF_NAME,
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_MANIFEST,
    BlobStore,
    Descriptor,
    Layer,
    Platform,
    blob_file,
)

DEFAULT_PLATFORMS: tuple[Platform, ...] = (Platform("linux", "amd64"), Platform("linux", "arm64"))


@dataclass(frozen=True)
class OciImage:
    """A packaged build: everything needed to push it, import it or archive it.

    ``index`` is the image's identity (its digest is what a registry reports after the push);
    ``tag`` is derived from it, so two builds share a tag only if they are byte-identical images.
    """

    app: str
    store_dir: Path
    index: Descriptor
    manifests: tuple[Descriptor, ...]  # one per platform, in ``index`` order
    configs: tuple[Descriptor, ...]  # the config of each manifest, same order
    layers: tuple[Layer, ...]  # shared by every manifest, bottom first
    tag: str

    @property
    def digest(self) -> str:
        return self.index.digest

    @property
    def size(self) -> int:
        """Bytes of all distinct blobs (what a cold push sends)."""
        return (
            sum(d.size for d in self.blob_descriptors())
            + sum(m.size for m in self.manifests)
            + self.index.size
        )

    def blob_path(self, digest: str) -> Path:
        # Not BlobStore(...).path: opening a store creates its folders, which a read never needs.
        return blob_file(self.store_dir, digest)

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def blob_descriptors(self) -> list[Descriptor]:
        """Layers and configs (the ``/blobs/`` half of a push), de-duplicated, layers first."""
        seen: set[str] = set()
        out: list[Descriptor] = []
        for d in [layer.descriptor for layer in self.layers] + list(self.configs):
            if d.digest not in seen:
                seen.add(d.digest)
                out.append(d)
        return out

    def platforms(self) -> tuple[Platform, ...]:
        return tuple(m.platform for m in self.manifests if m.platform is not None)


def build_image(
    store: BlobStore,
    *,
    app: str,
    layers: Sequence[Layer],
    config: Mapping[str, Any],
    annotations: Mapping[str, str],
    platforms: Sequence[Platform] = DEFAULT_PLATFORMS,
    tag_prefix: str = "",
) -> OciImage:
    """Write configs, manifests and the index for ``layers`` and return the image.

    ``config`` is the image config's ``config`` section (WorkingDir, Entrypoint, Labels…); the
    rootfs diff_ids and the platform fields are filled in here. No ``created`` time is written: it
    would make every build's digest different for identical content.
    """
    if not platforms:
        raise ValueError("an image needs at least one platform")
    diff_ids = [layer.diff_id for layer in layers]
    manifests: list[Descriptor] = []
    configs: list[Descriptor] = []
    for platform in platforms:
        config_doc: dict[str, Any] = {
            **platform.to_json(),
            "config": dict(config),
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        config_desc = store.put_json(config_doc, MEDIA_CONFIG)
        manifest_doc = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_desc.to_json(),
            "layers": [layer.descriptor.to_json() for layer in layers],
            "annotations": dict(annotations),
        }
        manifest_desc = store.put_json(manifest_doc, MEDIA_MANIFEST)
        configs.append(config_desc)
        manifests.append(
            Descriptor(MEDIA_MANIFEST, manifest_desc.digest, manifest_desc.size, platform=platform)
        )
    index_doc = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [m.to_json() for m in manifests],
        "annotations": dict(annotations),
    }
    index_desc = store.put_json(index_doc, MEDIA_INDEX)
    tag = f"{tag_prefix}{index_desc.hex[:16]}"
    recorded = Descriptor(
        MEDIA_INDEX, index_desc.digest, index_desc.size, annotations={ANNOTATION_REF_NAME: f"{app}:{tag}"}
    )
    store.record(recorded)
    return OciImage(
        app=app,
        store_dir=store.root,
        index=Descriptor(MEDIA_INDEX, index_desc.digest, index_desc.size),
        manifests=tuple(manifests),
        configs=tuple(configs),
        layers=tuple(layers),
        tag=tag,
    )
