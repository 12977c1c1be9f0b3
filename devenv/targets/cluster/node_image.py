"""The k3d node image with the Spin shim, built here, and what runtime a node image carries.

The shim project published k3d node images up to v0.24.0 (Spin 3.6.3); since PR #441 (May 2026)
it publishes only Kind images, ``ghcr.io/spinframework/containerd-shim-spin/kind:<version>``, with
the shim at ``/usr/local/bin/containerd-shim-spin-v2``. Its k3d image had only ever been
``rancher/k3s:<tag>`` plus the shim copied into ``/bin/`` (``deployments/k3d/Dockerfile`` at
v0.24.0), and k3s registers the ``spin`` runtime by itself when it finds
``containerd-shim-spin-v2`` on its PATH (k3s PR #9519). So wasmdev builds the same image from the
Kind image's binary, and labels it with the shim and Spin versions so a node says what it runs.
"""

from __future__ import annotations

import asyncio
import io
import re
import tarfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devenv.errors import TargetUnavailable
from devenv.model import NodeRuntime
from devenv.targets.cluster import docker_engine
from devenv.targets.cluster.steps import StepHandle

if TYPE_CHECKING:
    from devenv.targets.cluster.bootstrap import ClusterSettingsLike

SHIM_REPOSITORY = "ghcr.io/spinframework/containerd-shim-spin"
KIND_IMAGE = SHIM_REPOSITORY + "/kind:{shim}"
PUBLISHED_K3D_IMAGE = SHIM_REPOSITORY + "/k3d:{shim}"
K3S_IMAGE = "rancher/k3s:{k3s}"
SHIM_IN_KIND_IMAGE = "/usr/local/bin/containerd-shim-spin-v2"
SHIM_IN_K3S_IMAGE = "/bin/containerd-shim-spin-v2"
BUILT_IMAGE = "wasmdev/k3d-spin:{shim}-{k3s}"

LABEL_SHIM = "dev.wasmdev.node.shim-version"
LABEL_SPIN = "dev.wasmdev.node.spin-version"
LABEL_K3S = "dev.wasmdev.node.k3s-tag"

# The shim's README version map (containerd-shim-spin README, read 2026-12-04).
SHIM_SPIN_VERSIONS: dict[str, str] = {
    "v0.12.0": "2.2.0",
    "v0.13.0": "2.3.1",
    "v0.14.0": "2.4.2",
    "v0.14.1": "2.4.3",
    "v0.15.0": "2.6.0",
    "v0.15.1": "2.6.0",
    "v0.16.0": "2.6.0",
    "v0.17.0": "3.0.0",
    "v0.18.0": "3.1.2",
    "v0.19.0": "3.2.0",
    "v0.20.0": "3.3.1",
    "v0.21.0": "3.4.0",
    "v0.22.0": "3.5.0",
    "v0.23.0": "3.6.2",
    "v0.24.0": "3.6.3",
    "v0.25.0": "4.0.1",
    "v0.25.1": "4.0.1",
}
DEFAULT_SHIM = "v0.25.1"
# The shim's releases since v0.25.0 are tested only on Kind: deployments/kind/Dockerfile is
# ``FROM kindest/node:v1.35.0`` and no k3s tag appears in the repo's Makefile or workflows any
# more. The last k3d image (v0.24.0) was ``FROM rancher/k3s:v1.35.2-k3s1``, the same Kubernetes
# minor (1.35) as that Kind node, so that tag is the closest to "what the release was tested
# with" that exists; it is a choice, not a tested pairing, and --k3s / [cluster].k3s override it.
DEFAULT_K3S = "v1.35.2-k3s1"

_SHIM_TAG = re.compile(r"^v\d+\.\d+\.\d+$")
_K3S_TAG = re.compile(r"^v\d+\.\d+\.\d+-k3s\d+$")
_PUBLISHED = re.compile(
    r"^(?:ghcr\.io/(?:spinframework|spinkube)/containerd-shim-spin/k3d):(v\d+\.\d+\.\d+)$"
)


@dataclass(frozen=True)
class NodeImage:
    ref: str
    runtime: NodeRuntime
    built: bool  # False when an image already there was reused


def newest_shim_for(need: tuple[int, int]) -> str | None:
    """The newest shim release wasmdev knows whose Spin is at least ``need``."""
    fits = [
        shim
        for shim, spin in SHIM_SPIN_VERSIONS.items()
        if tuple(int(p) for p in spin.split(".")[:2]) >= need
    ]
    return max(fits, key=lambda tag: tuple(int(p) for p in tag[1:].split("."))) if fits else None


def check_shim_tag(shim: str) -> str:
    if not _SHIM_TAG.match(shim):
        raise TargetUnavailable(
            what=f"{shim!r} is not a containerd-shim-spin release tag",
            where="--shim / [cluster].shim",
            fix=f"use a tag like {DEFAULT_SHIM} (releases: https://github.com/spinframework/containerd-shim-spin/releases)",
        )
    return shim


def check_k3s_tag(k3s: str) -> str:
    if not _K3S_TAG.match(k3s):
        raise TargetUnavailable(
            what=f"{k3s!r} is not a rancher/k3s image tag",
            where="--k3s / [cluster].k3s",
            fix=f"use a tag like {DEFAULT_K3S} (https://hub.docker.com/r/rancher/k3s/tags)",
        )
    return k3s


def built_image_ref(shim: str, k3s: str) -> str:
    return BUILT_IMAGE.format(shim=shim, k3s=k3s)


def runtime_of_published(image: str) -> NodeRuntime | None:
    """The runtime of a node image the shim project published for k3d, from its tag."""
    found = _PUBLISHED.match(image.removeprefix("docker.io/"))
    if not found:
        return None
    shim = found.group(1)
    return NodeRuntime(image=image, shim=shim, spin=SHIM_SPIN_VERSIONS.get(shim))


def runtime_from_labels(image: str, labels: dict[str, str] | None) -> NodeRuntime | None:
    labels = labels or {}
    if LABEL_SHIM not in labels:
        return None
    spin = labels.get(LABEL_SPIN) or None
    return NodeRuntime(image=image, shim=labels[LABEL_SHIM], spin=None if spin == "unknown" else spin)


# --- Docker ------------------------------------------------------------------------------------------

Progress = Callable[[str], None]


def docker_client() -> Any:
    return docker_engine.connect(timeout=600)


def server_image_id(cluster_json: Mapping[str, Any]) -> str | None:
    """The image ID (``sha256:…``) k3d reports for a cluster's first server node."""
    for node in cluster_json.get("nodes") or []:
        if node.get("role") == "server" and node.get("image"):
            return str(node["image"])
    return None


def inspect_runtime(image: str, client: Any | None = None) -> NodeRuntime:
    """The runtime a node image (a name or an ID) carries: the labels ``ensure_node_image`` sets,
    else the published k3d images' version table by any of its names.

    An image wasmdev neither built nor knows, or a Docker that does not answer, gives a runtime
    with no shim, so callers say "unknown" instead of guessing."""
    known = runtime_of_published(image)
    if known is not None:
        return known
    own = client is None
    try:
        import docker

        client = client or docker_client()
        try:
            found = client.images.get(image)
        except docker.errors.ImageNotFound:
            return NodeRuntime(image=image, shim=None, spin=None)
        labelled = runtime_from_labels(image, found.labels)
        if labelled is not None:
            return labelled
        for tag in found.tags:
            published = runtime_of_published(tag)
            if published is not None:
                return NodeRuntime(image=tag, shim=published.shim, spin=published.spin)
        return NodeRuntime(image=image, shim=None, spin=None)
    except Exception:  # noqa: BLE001 - no Docker answer: the runtime is unknown, not an error
        return NodeRuntime(image=image, shim=None, spin=None)
    finally:
        if own and client is not None:
            client.close()


async def node_image_for_cluster(
    settings: ClusterSettingsLike,
    step: StepHandle,
    existing_cluster: Mapping[str, Any] | None,
    build: Callable[[str, str, Progress], NodeImage],
    inspect: Callable[[str], NodeRuntime],
) -> tuple[str, NodeRuntime]:
    """The image a new cluster's nodes are made from (built unless [cluster].image names one),
    or, for an existing cluster (its k3d JSON), the image its server node runs; and that image's
    runtime. ``build`` and ``inspect`` are blocking (``ensure_node_image``, ``inspect_runtime``)."""
    if existing_cluster is not None:
        image = server_image_id(existing_cluster) or settings.image or "unknown"
        runtime = await asyncio.to_thread(inspect, image)
        step.done(f"existing nodes run {runtime.describe()}")
        return image, runtime
    if settings.image:
        runtime = await asyncio.to_thread(inspect, settings.image)
        step.done(f"{settings.image}: {runtime.describe()}")
        return settings.image, runtime
    loop = asyncio.get_running_loop()

    def progress(text: str) -> None:  # called on the builder's thread
        loop.call_soon_threadsafe(step.note, text)

    shim, k3s = settings.shim or DEFAULT_SHIM, settings.k3s or DEFAULT_K3S
    built = await asyncio.to_thread(build, shim, k3s, progress)
    step.done(f"{'built' if built.built else 'reusing'} {built.ref}: {built.runtime.describe()}")
    return built.ref, built.runtime


def ensure_node_image(
    shim: str = DEFAULT_SHIM,
    k3s: str = DEFAULT_K3S,
    *,
    client: Any | None = None,
    progress: Progress = lambda _text: None,
) -> NodeImage:
    """The k3d node image for this shim and k3s tag: reused when already built, else built.

    Blocking (the Docker SDK); run it in a thread from async code.
    """
    check_shim_tag(shim)
    check_k3s_tag(k3s)
    ref = built_image_ref(shim, k3s)
    own = client is None
    client = client or docker_client()
    try:
        import docker

        try:
            existing = client.images.get(ref)
        except docker.errors.ImageNotFound:
            existing = None
        if existing is not None and (existing.labels or {}).get(LABEL_SHIM) == shim:
            runtime = runtime_from_labels(ref, existing.labels)
            assert runtime is not None
            return NodeImage(ref=ref, runtime=runtime, built=False)
        kind_image = KIND_IMAGE.format(shim=shim)
        k3s_image = K3S_IMAGE.format(k3s=k3s)
        _pull_if_missing(client, kind_image, progress, "the shim's Kind node image, for its shim binary")
        _pull_if_missing(client, k3s_image, progress, "the k3s node image")
        progress(f"copying {SHIM_IN_KIND_IMAGE} out of {kind_image}")
        shim_bytes, mode = _read_file_from_image(client, kind_image, SHIM_IN_KIND_IMAGE)
        spin = SHIM_SPIN_VERSIONS.get(shim, "unknown")
        progress(f"building {ref} from {k3s_image} + the shim ({len(shim_bytes) // 1_000_000} MB)")
        _build(client, ref, k3s_image, shim_bytes, mode, {LABEL_SHIM: shim, LABEL_SPIN: spin, LABEL_K3S: k3s})
        return NodeImage(
            ref=ref, runtime=NodeRuntime(image=ref, shim=shim, spin=SHIM_SPIN_VERSIONS.get(shim)), built=True
        )
    except docker.errors.DockerException as exc:
        raise TargetUnavailable(
            what=f"building the k3d node image {ref} failed: {_first_line(exc)}",
            where="the Docker engine",
            fix="check `docker info` and free disk space, then run `wasmdev cluster image` again",
        ) from exc
    finally:
        if own:
            client.close()


def _pull_if_missing(client: Any, image: str, progress: Progress, purpose: str) -> None:
    import docker

    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    progress(f"pulling {image} ({purpose})")
    repository, _, tag = image.rpartition(":")
    try:
        client.images.pull(repository, tag=tag)
    except docker.errors.DockerException as exc:
        raise TargetUnavailable(
            what=f"could not pull {image} ({purpose}): {_first_line(exc)}",
            where="the Docker engine's registry access",
            fix=(
                "connect to the network and run `wasmdev cluster image` again; behind a private "
                f"registry or proxy, `docker login` to it or `docker pull {image}` (or `docker load` "
                "a saved copy) yourself first; wasmdev uses an image already present without pulling"
            ),
        ) from exc


def _read_file_from_image(client: Any, image: str, path: str) -> tuple[bytes, int]:
    """One file's bytes and mode, read from a created (never started) container of ``image``."""
    # A command is given so an image without one (a FROM-scratch stand-in) can still be created;
    # nothing runs: the container is only a handle on the image's filesystem for get_archive.
    container = client.containers.create(
        image, command=["/wasmdev-never-runs"], name=f"wasmdev-shim-{uuid.uuid4().hex[:8]}"
    )
    try:
        stream, _stat = container.get_archive(path)
        archive = io.BytesIO(b"".join(stream))
    finally:
        container.remove(force=True)
    with tarfile.open(fileobj=archive) as tar:
        member = next((m for m in tar.getmembers() if m.isfile()), None)
        if member is None:
            raise TargetUnavailable(
                what=f"{path} in {image} is not a regular file",
                fix="check the shim version; its Kind image should carry the shim binary at that path",
            )
        data = tar.extractfile(member)
        assert data is not None
        return data.read(), member.mode


def _build(client: Any, ref: str, base: str, shim: bytes, mode: int, labels: dict[str, str]) -> None:
    """``FROM base`` + ``COPY`` the shim into /bin, from a context made in memory.

    A build (rather than creating a k3s container, putting the file in and committing it) keeps
    the result exactly the shim project's old Dockerfile: the base's layers shared untouched, one
    layer added, the base's entrypoint and environment kept as they were, labels set in the same
    step; and the classic builder neither pulls a base that is present (pull=False) nor needs a
    network for a context that is only this Dockerfile and one file.
    """
    dockerfile = (
        f"FROM {base}\n"
        f"COPY containerd-shim-spin-v2 {SHIM_IN_K3S_IMAGE}\n"
        + "".join(f'LABEL {key}="{value}"\n' for key, value in labels.items())
    ).encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data, file_mode in (
            ("Dockerfile", dockerfile, 0o644),
            ("containerd-shim-spin-v2", shim, mode or 0o755),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = file_mode
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=ref, pull=False, rm=True, forcerm=True)


def _first_line(exc: BaseException) -> str:
    # An APIError's str() starts with the HTTP request; its explanation is the engine's own words.
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
