"""Content-addressed OCI image layout on disk, and deterministic tar layers.

``store_dir`` is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/…``) shared by
every build of every app: a blob is written once under its digest and reused by every later image
that contains the same bytes, so an unchanged 18 MB component costs a hash, not a copy.

Layers are deterministic: entries sorted by path, parents listed as directories, mtime 0, uid/gid 0,
no user/group names, mode 0644 for files and 0755 for directories, PAX format. The same inputs
therefore give the same layer digest on any machine, at any time, which is what lets the registry
client skip blobs the registry already has.

A small cache (``cache/layers/<recipe>.json``) maps a layer's recipe (paths, modes and the sha256 of
each file's content) to the layer it produced, so a warm package skips writing the tar entirely.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"

# index.json lists the most recent images only, and prune() drops every blob they do not use: a
# long session must not grow the store without bound (16 builds of an 18 MB component ~ 290 MB).
INDEX_KEEP = 16

_PARENT_MEDIA_TYPES = (
    MEDIA_INDEX,
    MEDIA_MANIFEST,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)

_READ_CHUNK = 1 << 20


def sha256_file(path: Path) -> tuple[str, int]:
    """``("sha256:<hex>", size)`` of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_READ_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def blob_file(root: Path, digest: str) -> Path:
    """Where the layout at ``root`` keeps the blob ``sha256:<hex>`` (no I/O)."""
    algo, _, hex_ = digest.partition(":")
    if algo != "sha256" or len(hex_) != 64:
        raise ValueError(f"unsupported digest {digest!r}")
    return root / "blobs" / "sha256" / hex_


def canonical_json(obj: Any) -> bytes:
    """Stable JSON bytes (sorted keys, no whitespace) so equal documents have equal digests."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``"linux/arm64"`` or ``"linux/arm64/v8"``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform {text!r} is not os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    def to_json(self) -> dict[str, str]:
        out = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest or index says about a blob."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


@dataclass(frozen=True)
class Layer:
    """A layer blob plus the digest of its uncompressed tar (the config's ``diff_id``)."""

    descriptor: Descriptor
    diff_id: str
    title: str  # what it holds, e.g. "component hello-c" (for logs and benchmarks)


@dataclass(frozen=True)
class LayerEntry:
    """One regular file in a layer: its path in the image and where its bytes come from."""

    path: str  # relative posix path in the image, e.g. "components/api.wasm"
    source: Path | None = None
    data: bytes | None = None
    mode: int = 0o644

    def __post_init__(self) -> None:
        if (self.source is None) == (self.data is None):
            raise ValueError("a LayerEntry needs exactly one of source or data")
        p = PurePosixPath(self.path)
        if p.is_absolute() or ".." in p.parts or not p.parts:
            raise ValueError(f"layer path {self.path!r} must be relative and stay inside the image")


class BlobStore:
    """The OCI layout directory: content-addressed blobs, written atomically, never rewritten."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        (root / "cache" / "layers").mkdir(parents=True, exist_ok=True)
        layout = root / "oci-layout"
        if not layout.exists():
            _atomic_write(layout, canonical_json({"imageLayoutVersion": "1.0.0"}))

    def path(self, digest: str) -> Path:
        return blob_file(self.root, digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            _atomic_write(target, data)
        return Descriptor(media_type, digest, len(data))

    def put_json(self, obj: Any, media_type: str) -> Descriptor:
        return self.put_bytes(canonical_json(obj), media_type)

    @contextlib.contextmanager
    def _staging(self) -> Iterator[tuple[BinaryIO, Path]]:
        fd, name = tempfile.mkstemp(dir=self.blobs, prefix=".tmp-")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f, tmp
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def write_layer(self, entries: Sequence[LayerEntry], *, title: str, compress: bool = False) -> Layer:
        """The layer holding ``entries``, from the recipe cache when the same recipe was built before."""
        entries = sorted(entries, key=lambda e: e.path)
        recipe = _recipe(entries, compress)
        cached = self.root / "cache" / "layers" / f"{recipe}.json"
        if cached.exists():
            try:
                meta = json.loads(cached.read_text())
                if self.has(meta["digest"]):
                    desc = Descriptor(meta["mediaType"], meta["digest"], meta["size"])
                    return Layer(desc, meta["diffId"], title)
            except (ValueError, KeyError):
                pass  # a torn or stale cache entry: rebuild the layer
        with self._staging() as (raw, tmp):
            blob_hasher = _HashingWriter(raw)
            if compress:
                # mtime=0 and no file name keep the gzip header (and so the digest) stable.
                gz = gzip.GzipFile(filename="", mode="wb", fileobj=blob_hasher, mtime=0, compresslevel=6)
                diff_hasher = _HashingWriter(gz)
                _write_tar(entries, diff_hasher)
                gz.close()
            else:
                diff_hasher = blob_hasher
                _write_tar(entries, diff_hasher)
            raw.flush()
        digest = "sha256:" + blob_hasher.hexdigest()
        target = self.path(digest)
        if target.exists():
            tmp.unlink()
        else:
            os.replace(tmp, target)
        media = MEDIA_LAYER_GZIP if compress else MEDIA_LAYER_TAR
        desc = Descriptor(media, digest, blob_hasher.size)
        diff_id = "sha256:" + diff_hasher.hexdigest()
        meta = {"mediaType": media, "digest": digest, "size": desc.size, "diffId": diff_id}
        _atomic_write(cached, canonical_json(meta))
        return Layer(desc, diff_id, title)

    # -- index.json ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Several apps may package at once (threads or processes): serialise index.json updates.
        with (self.root / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read_index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        if not path.exists():
            return {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": []}
        return json.loads(path.read_text())

    def record(self, descriptor: Descriptor) -> None:
        """List ``descriptor`` in index.json (newest last; older entries of the same ref dropped)."""
        ref = descriptor.annotations.get(ANNOTATION_REF_NAME)
        with self._locked():
            index = self.read_index()
            kept = [
                m
                for m in index.get("manifests", [])
                if m.get("digest") != descriptor.digest
                and (ref is None or m.get("annotations", {}).get(ANNOTATION_REF_NAME) != ref)
            ]
            kept.append(descriptor.to_json())
            index["manifests"] = kept[-INDEX_KEEP:]
            _atomic_write(self.root / "index.json", json.dumps(index, indent=2).encode())

    def prune(self, *, min_age_s: float = 0.0) -> int:
        """Delete blobs no image in index.json reaches; returns how many were removed.

        Every build of an 18 MB component leaves its layer behind, so a long session calls this
        now and then; index.json keeps the last ``INDEX_KEEP`` images and everything they use.
        Blobs younger than ``min_age_s`` stay: another process sharing the store may be writing
        an image whose blobs index.json does not reach yet.
        """
        cutoff = time.time() - min_age_s
        with self._locked():
            reachable: set[str] = set()
            # Walk from index.json down; only indexes and manifests have children, so only those
            # are parsed (never a layer, which may be large).
            stack = [(m["digest"], m.get("mediaType", "")) for m in self.read_index().get("manifests", [])]
            while stack:
                digest, media_type = stack.pop()
                if digest in reachable:
                    continue
                reachable.add(digest)
                path = self.path(digest)
                if media_type not in _PARENT_MEDIA_TYPES or not path.exists():
                    continue
                doc = json.loads(path.read_bytes())
                children = doc.get("manifests", []) + doc.get("layers", [])
                if isinstance(doc.get("config"), dict):
                    children.append(doc["config"])
                stack.extend((c["digest"], c.get("mediaType", "")) for c in children)
            removed = 0
            for blob in self.blobs.iterdir():
                if blob.name.startswith(".tmp-") or "sha256:" + blob.name in reachable:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if min_age_s and blob.stat().st_mtime > cutoff:
                        continue
                    blob.unlink()
                    removed += 1
            for meta in (self.root / "cache" / "layers").iterdir():
                with contextlib.suppress(ValueError, KeyError, OSError):
                    if json.loads(meta.read_text())["digest"] not in reachable:
                        meta.unlink()
            return removed


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``inner``."""

    def __init__(self, inner: BinaryIO | Any) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._hash.update(view)
        self.size += len(view)
        self._inner.write(view)
        return len(view)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _recipe(entries: Sequence[LayerEntry], compress: bool) -> str:
    parts: list[Any] = [2, compress]  # bump the leading version when the tar format changes
    for e in entries:
        if e.source is not None:
            digest, size = sha256_file(e.source)
        else:
            assert e.data is not None
            digest, size = "sha256:" + hashlib.sha256(e.data).hexdigest(), len(e.data)
        parts.append([e.path, e.mode, digest, size])
    return hashlib.sha256(canonical_json(parts)).hexdigest()


def _parents(paths: Iterable[str]) -> list[str]:
    dirs: set[str] = set()
    for p in paths:
        for parent in PurePosixPath(p).parents:
            if str(parent) != ".":
                dirs.add(str(parent))
    return sorted(dirs)


def _tarinfo(name: str, *, directory: bool, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.type = tarfile.REGTYPE
        info.mode = mode
        info.size = size
    return info


def _write_tar(entries: Sequence[LayerEntry], out: Any) -> None:
    by_path: dict[str, LayerEntry] = {}
    for e in entries:
        if e.path in by_path:
            raise ValueError(f"two files want the image path {e.path!r}")
        by_path[e.path] = e
    # Directories first, then files, all sorted: a stable order gives a stable digest.
    members: list[tuple[str, LayerEntry | None]] = [(d, None) for d in _parents(by_path)]
    members += sorted(by_path.items())
    members.sort(key=lambda m: m[0])
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, entry in members:
            if entry is None:
                tar.addfile(_tarinfo(name, directory=True))
            elif entry.data is not None:
                tar.addfile(
                    _tarinfo(name, directory=False, size=len(entry.data), mode=entry.mode),
                    io.BytesIO(entry.data),
                )
            else:
                assert entry.source is not None
                with entry.source.open("rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    tar.addfile(_tarinfo(name, directory=False, size=size, mode=entry.mode), f)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
