"""Package built Spin apps as OCI images the Spin shim runs, and ship them.

- ``package_app(built, store_dir)`` writes the image into a content-addressed OCI layout
  (``package.py`` documents the image format, media types and platforms).
- ``RegistryClient(url).push(image, repository, tag)`` sends only what the registry lacks.
- ``write_oci_archive(image, tar_path, ref)`` makes a tar for ``k3d image import``/``ctr images import``.
"""

from devenv.oci.archive import normalize_ref, write_oci_archive
from devenv.oci.image import DEFAULT_PLATFORMS, OciImage
from devenv.oci.layout import BlobStore, Descriptor, Layer, Platform
from devenv.oci.package import package_app
from devenv.oci.registry import PushResult, RegistryClient, RegistryError, normalize_repository

__all__ = [
    "DEFAULT_PLATFORMS",
    "BlobStore",
    "Descriptor",
    "Layer",
    "OciImage",
    "Platform",
    "PushResult",
    "RegistryClient",
    "RegistryError",
    "normalize_ref",
    "normalize_repository",
    "package_app",
    "write_oci_archive",
]
