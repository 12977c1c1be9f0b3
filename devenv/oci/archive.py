"""An image as one tar file, for ``k3d image import``, ``ctr images import`` and ``docker load``.

The tar is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/…``) holding the whole
multi-platform index, which is what containerd imports (k3d runs ``ctr image import
--all-platforms`` on every node). It also carries a Docker ``manifest.json`` for the host's
platform, so ``docker load`` of the same file works; containerd ignores that file when
``index.json`` is present.

Naming: containerd names an imported image from the ``io.containerd.image.name`` annotation, which
must be fully qualified (``docker.io/library/hello:tag``), the name a pod's ``image: hello:tag``
resolves to; ``org.opencontainers.image.ref.name`` carries the tag for tools that read only that.
"""

from __future__ import annotations

import io
import os
import platform as host_platform
import tarfile
import tempfile
from pathlib import Path

from devenv.oci.image import OciImage
from devenv.oci.layout import ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Descriptor, canonical_json

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def normalize_ref(ref: str) -> str:
    """``hello:1`` → ``docker.io/library/hello:1``, as containerd's CRI resolves a pod's image name."""
    name, tag = ref, "latest"
    last = ref.rsplit("/", 1)[-1]
    if "@" in last:
        raise ValueError(f"{ref!r}: an archive is named by tag, not by digest")
    if ":" in last:
        name, tag = ref.rsplit(":", 1)
    first, _, rest = name.partition("/")
    if not rest:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return f"{name}:{tag}"


def write_oci_archive(image: OciImage, tar_path: Path, ref: str) -> Path:
    """Write ``image`` named ``ref`` to ``tar_path`` (atomically) and return the path.

    Deterministic: the same image and ref give the same bytes.
    """
    full = normalize_ref(ref)
    tag = full.rsplit(":", 1)[1]
    index_entry = Descriptor(
        image.index.media_type,
        image.index.digest,
        image.index.size,
        annotations={ANNOTATION_CONTAINERD_NAME: full, ANNOTATION_REF_NAME: tag},
    )
    oci_index = {
        "schemaVersion": 2,
        "mediaType": image.index.media_type,
        "manifests": [index_entry.to_json()],
    }

    arch = _ARCH.get(host_platform.machine().lower(), "amd64")
    pick = 0
    for i, manifest in enumerate(image.manifests):
        if manifest.platform is not None and manifest.platform.architecture == arch:
            pick = i
            break
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{image.configs[pick].hex}",
            "RepoTags": [ref],
            "Layers": [f"blobs/sha256/{layer.descriptor.hex}" for layer in image.layers],
        }
    ]

    digests = sorted(
        {d.digest for d in image.blob_descriptors()} | {m.digest for m in image.manifests} | {image.digest}
    )
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tar_path.parent, prefix=".tmp-", suffix=".tar")
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
            _add_bytes(tar, "index.json", canonical_json(oci_index))
            _add_bytes(tar, "manifest.json", canonical_json(docker_manifest))
            for name in ("blobs", "blobs/sha256"):
                _add_dir(tar, name)
            for digest in digests:
                path = image.blob_path(digest)
                info = _info(f"blobs/sha256/{digest.split(':', 1)[1]}", path.stat().st_size)
                with path.open("rb") as blob:
                    tar.addfile(info, blob)
        os.replace(tmp, tar_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tar_path


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = _info(name, 0)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)
