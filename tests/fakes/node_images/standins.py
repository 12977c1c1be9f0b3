"""Stand-ins for the two images a node image is built from, made with the Engine API's image
import (what ``docker import`` calls) so nothing is ever pulled: a ``rancher/k3s:<tag>`` with a
k3s-shaped filesystem and a shim ``kind:<version>`` image with an executable
``/usr/local/bin/containerd-shim-spin-v2`` that answers ``--version`` as runwasi shims do. They are
named as the real ones so the builder's "pull if missing" finds them present."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from typing import Any

from devenv.targets.cluster.node_image import K3S_IMAGE, KIND_IMAGE

STANDIN_LABEL = "dev.wasmdev.test.standin"


def shim_script(version: str) -> bytes:
    # runwasi's shims print "<name>:\n  Version: <v>\n  Revision: <sha>" for --version.
    return (
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ] || [ "$1" = "-v" ]; then\n'
        f'  printf "containerd-shim-spin-v2:\\n  Version: {version.lstrip("v")}\\n  Revision: 0000000\\n"\n'
        "  exit 0\nfi\n"
        'echo "containerd-shim-spin-v2: only containerd starts this" >&2\nexit 1\n'
    ).encode()


def _rootfs(files: dict[str, tuple[bytes, int]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path, (data, mode) in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass
class StandIns:
    client: Any
    made: list[str] = field(default_factory=list)

    def _import(self, ref: str, files: dict[str, tuple[bytes, int]], changes: list[str]) -> str:
        repository, _, tag = ref.rpartition(":")
        self.client.api.import_image_from_data(
            _rootfs(files), repository=repository, tag=tag, changes=[f"LABEL {STANDIN_LABEL}=1", *changes]
        )
        self.made.append(ref)
        return ref

    def k3s(self, tag: str) -> str:
        return self._import(
            K3S_IMAGE.format(k3s=tag),
            {"/bin/k3s": (b"#!/bin/sh\necho k3s stand-in\n", 0o755), "/etc/os-release": (b"ID=k3s\n", 0o644)},
            ['ENTRYPOINT ["/bin/k3s"]', 'CMD ["agent"]', "ENV PATH=/bin:/usr/local/bin"],
        )

    def kind(self, shim: str) -> str:
        return self._import(
            KIND_IMAGE.format(shim=shim),
            {
                "/usr/local/bin/containerd-shim-spin-v2": (shim_script(shim), 0o755),
                "/usr/local/bin/containerd": (b"not the shim\n", 0o755),
            },
            ['ENTRYPOINT ["/usr/local/bin/entrypoint"]'],
        )

    def remove(self, *refs: str) -> None:
        import docker

        for ref in refs:
            try:
                self.client.images.remove(ref, force=True)
            except docker.errors.ImageNotFound:
                pass

    def cleanup(self) -> None:
        self.remove(*self.made)
