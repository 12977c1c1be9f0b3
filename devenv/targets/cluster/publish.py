"""Getting a build into a registry the cluster's nodes pull from.

A ``Packager`` packages a build and pushes it under the push registry's path; the kube target then
names the image by the *pull* registry's host (k3d: push to ``localhost:PORT``, pods pull from
``REGISTRY-NAME:5000``; another cluster: usually the same ``HOST/REPO`` both ways).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devenv.model import BuiltApp


@dataclass(frozen=True)
class PublishedImage:
    repository: str  # the path inside the registry, e.g. "team/hello"
    tag: str
    digest: str = ""


# (built app, push registry "HOST[:PORT][/PATH]") -> what the registry now serves. Blocking.
Packager = Callable[[BuiltApp, str], PublishedImage]


def split_registry(registry: str) -> tuple[str, str]:
    """``http://host:5000/team`` → (``http://host:5000``, ``team``); the scheme is optional."""
    scheme, sep, rest = registry.partition("://")
    if not sep:
        scheme, rest = "", registry
    host, _, path = rest.partition("/")
    return (f"{scheme}://{host}" if scheme else host), path.strip("/")


# Every build leaves its changed layers in the local OCI store; drop the unreferenced ones now
# and then. Blobs younger than PRUNE_MIN_AGE_S stay, for another wasmdev sharing the store.
PRUNE_EVERY = 8
PRUNE_MIN_AGE_S = 300.0
_store_locks: dict[Path, threading.Lock] = {}
_store_locks_guard = threading.Lock()


def _store_lock(store_dir: Path) -> threading.Lock:
    with _store_locks_guard:
        return _store_locks.setdefault(Path(store_dir).resolve(), threading.Lock())


def oci_packager(store_dir: Path, *, insecure: bool = False) -> Packager:
    """The real packager: ``devenv.oci`` writes the image and pushes only what the registry lacks.

    ``insecure`` pushes over plain http to a non-loopback registry (loopback is always http).
    """

    lock = _store_lock(store_dir)
    published = 0

    def publish(built: BuiltApp, push_registry: str) -> PublishedImage:
        from devenv.oci import BlobStore, RegistryClient, normalize_repository, package_app

        nonlocal published
        base, prefix = split_registry(push_registry)
        if insecure and "://" not in base:
            base = f"http://{base}"
        repository = "/".join(p for p in (prefix, normalize_repository(built.spec.name)) if p)
        # Packaging and pruning never overlap in this process: a prune between writing an image's
        # blobs and recording it in index.json would delete them.
        with lock:
            image = package_app(built, store_dir)
            published += 1
            if published % PRUNE_EVERY == 0:
                BlobStore(store_dir).prune(min_age_s=PRUNE_MIN_AGE_S)
        result = RegistryClient(base).push(image, repository, image.tag)
        return PublishedImage(repository=repository, tag=image.tag, digest=result.digest)

    return publish
