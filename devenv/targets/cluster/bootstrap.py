"""Bring up (or reuse) the local k3d cluster wasmdev deploys to, one visible step at a time.

Each step is reported as a ``StepState`` (pending → running → done/failed/skipped, with start and
finish times so the UI can show elapsed time) through a sink: the store's dispatch for ``wasmdev
up``, a plain-text printer for ``wasmdev cluster create``.

The order is the order a user would check by hand: Docker, k3d, ports, then the registry, the
cluster, the kubeconfig, and Kubernetes itself. k3d's ``--wait`` only waits for log lines in the
node containers, so nodes Ready and the RuntimeClass are awaited here through the API server.
Whatever this run created is removed again if a later step fails: nothing half-made is left.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from devenv.errors import TargetUnavailable, WasmdevError
from devenv.model import NodeRuntime
from devenv.targets.cluster import docker_engine
from devenv.targets.cluster.k3d import (
    INSTALL_K3D,
    MIN_K3D_VERSION,
    ClusterInfo,
    K3dCli,
    K3dCommandError,
    RegistryInfo,
    format_version,
)
from devenv.targets.cluster.node_image import (
    NodeImage,
    Progress,
    ensure_node_image,
    inspect_runtime,
    node_image_for_cluster,
)
from devenv.targets.cluster.node_readiness import (
    RECREATE,
    KubeProbe,
    KubernetesProbe,
    Polling,
    ProbeFactory,
    ensure_cluster_runtime_class,
    first_line,
    runtime_handler,
    wait_nodes_ready,
)
from devenv.targets.cluster.steps import StepReporter, StepSink


class ClusterSettingsLike(Protocol):
    """The fields of ``devenv.config.ClusterSettings`` that the cluster target reads."""

    name: str
    image: str  # "" = build the node image from shim + k3s
    shim: str
    k3s: str
    agents: int
    http_port: int
    api_port: int | None
    registry_name: str
    registry_port: int
    runtime_class: str
    namespace: str
    kubeconfig: Path


STEPS: tuple[tuple[str, str], ...] = (
    ("docker", "Docker engine"),
    ("k3d", "k3d CLI"),
    ("ports", "Host ports"),
    ("nodeimage", "Node image"),
    ("registry", "Image registry"),
    ("cluster", "k3d cluster"),
    ("kubeconfig", "Kubeconfig"),
    ("nodes", "Nodes Ready"),
    ("runtimeclass", "RuntimeClass"),
)


# --- checks --------------------------------------------------------------------------------------


def ping_docker() -> None:
    """Raise TargetUnavailable unless a Docker engine answers (DOCKER_HOST or the default socket)."""
    docker_engine.ping()


def start_docker_container(name: str) -> None:
    """Start a stopped container (the k3d registry) through the Docker SDK."""
    import docker

    client = None
    try:
        client = docker.from_env(timeout=30)  # raises too when the engine went away since the ping
        client.containers.get(name).start()
    except docker.errors.DockerException as exc:
        raise TargetUnavailable(
            what=f"could not start the stopped registry container {name}: {first_line(exc)}",
            fix=f"docker start {name}, or remove it (k3d registry delete {name}) and run wasmdev cluster create",
        ) from exc
    finally:
        if client is not None:
            client.close()


def port_in_use(port: int, host: str = "0.0.0.0") -> bool:
    """True if something listens on ``host:port``. k3d maps the HTTP port on all interfaces."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR so a connection lingering in TIME_WAIT is not mistaken for a listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


@dataclass(frozen=True)
class PortNeed:
    port: int
    purpose: str
    flag: str  # how to choose another, for the message
    host: str = "0.0.0.0"


def check_ports(needs: list[PortNeed], in_use: Callable[[int, str], bool] = port_in_use) -> None:
    busy = [n for n in needs if in_use(n.port, n.host)]
    if not busy:
        return
    what = "; ".join(f"port {n.port} ({n.purpose}) is already in use" for n in busy)
    fix = "; ".join(f"free port {n.port} or choose another with {n.flag}" for n in busy)
    raise TargetUnavailable(what=what, fix=fix)


# --- the cluster as wasmdev sees it ----------------------------------------------------------------


@dataclass(frozen=True)
class ClusterEndpoint:
    """What the deployer needs to reach the cluster, and what this run made."""

    name: str
    kubeconfig: Path
    context: str  # k3d names both cluster and context k3d-NAME
    http_port: int
    registry: RegistryInfo | None
    created_cluster: bool = False
    node_runtime: NodeRuntime | None = None  # which shim and Spin the nodes run, when known
    created_registry: bool = False
    notes: tuple[str, ...] = ()


@dataclass
class BootstrapOptions:
    """Seams and limits; the defaults are what ``wasmdev cluster create`` uses."""

    # Nodes Ready + RuntimeClass. The node image pull happens inside k3d's own wait, not here.
    polling: Polling = Polling(timeout=180.0, interval=1.0)
    docker_ping: Callable[[], None] = ping_docker
    port_in_use: Callable[[int, str], bool] = port_in_use
    start_container: Callable[[str], None] = start_docker_container
    probe_factory: ProbeFactory | None = None  # default: the kubernetes client
    # Blocking, run in a thread: build (or reuse) the node image; say what image a node runs.
    node_image: Callable[[str, str, Progress], NodeImage] = lambda shim, k3s, progress: ensure_node_image(
        shim, k3s, progress=progress
    )
    node_runtime: Callable[[str], NodeRuntime] = inspect_runtime


def default_probe(kubeconfig: Path, context: str) -> KubeProbe:
    return KubernetesProbe(kubeconfig, context)


async def bootstrap_cluster(
    settings: ClusterSettingsLike,
    sink: StepSink,
    *,
    cli: K3dCli | None = None,
    options: BootstrapOptions | None = None,
) -> ClusterEndpoint:
    """Check, create or reuse, and wait; raise TargetUnavailable (after rolling back) on failure."""
    opts = options or BootstrapOptions()
    cli = cli or K3dCli(settings.kubeconfig)
    steps = StepReporter(sink)
    steps.plan(STEPS)
    try:
        return await _bootstrap(settings, cli, steps, opts)
    except WasmdevError as err:
        if isinstance(err, TargetUnavailable):
            raise
        # The Target contract: a target that cannot be prepared raises TargetUnavailable.
        raise TargetUnavailable(what=err.what, where=err.where, fix=err.fix) from err


async def _bootstrap(
    settings: ClusterSettingsLike, cli: K3dCli, steps: StepReporter, opts: BootstrapOptions
) -> ClusterEndpoint:
    runtime_handler(settings.runtime_class)  # a settings mistake: say so before making anything
    async with steps.step("docker", "Docker engine") as s:
        await asyncio.to_thread(opts.docker_ping)
        s.done("reachable")

    async with steps.step("k3d", "k3d CLI") as s:
        s.done(await check_k3d(cli))
        # What exists decides which ports must be free: a reused cluster already holds its own.
        cluster = await cli.get_cluster(settings.name)
        registry = await cli.get_registry(settings.registry_name) if settings.registry_name else None

    async with steps.step("ports", "Host ports") as s:
        needs = _port_needs(settings, cluster, registry)
        if not needs:
            s.skip("in use by the existing cluster and registry")
        else:
            check_ports(needs, opts.port_in_use)
            s.done(", ".join(f"{n.port} free" for n in needs))

    made = _Undo(cli, settings)
    try:
        return await _create_and_wait(settings, cli, steps, opts, cluster, registry, made)
    except BaseException:
        if made.anything:
            # Shielded: a Ctrl-C during create must still remove what this run made.
            await asyncio.shield(made.roll_back(steps))
        raise


async def check_k3d(cli: K3dCli) -> str:
    exe = cli.locate()
    if exe is None:
        raise TargetUnavailable(
            what="k3d is not installed (not found on PATH)",
            fix=f"install k3d ≥ {format_version(MIN_K3D_VERSION)}: {INSTALL_K3D}",
        )
    version = await cli.version()
    if version is None:
        return f"k3d (development build, version unknown) at {exe}"
    if version < MIN_K3D_VERSION:
        raise TargetUnavailable(
            what=f"k3d {format_version(version)} at {exe} is too old: the Spin shim node image "
            f"(containerd-shim-spin k3d:v0.24.0, k3s v1.35) needs k3d ≥ {format_version(MIN_K3D_VERSION)}",
            fix=f"upgrade k3d: {INSTALL_K3D}",
        )
    return f"k3d {format_version(version)} at {exe}"


def _port_needs(
    settings: ClusterSettingsLike, cluster: ClusterInfo | None, registry: RegistryInfo | None
) -> list[PortNeed]:
    needs = []
    if cluster is None:
        needs.append(PortNeed(settings.http_port, "HTTP ingress", "--http-port / [cluster].http_port"))
        if settings.api_port is not None:
            needs.append(
                PortNeed(
                    settings.api_port, "Kubernetes API", "--api-port / [cluster].api_port", host="127.0.0.1"
                )
            )
    if settings.registry_name and registry is None:
        needs.append(
            PortNeed(
                settings.registry_port,
                "image registry",
                "--registry-port / [cluster].registry_port",
                host="127.0.0.1",
            )
        )
    return needs


@dataclass
class _Undo:
    """What this run created, so a failure can remove exactly that and nothing the user had."""

    cli: K3dCli
    settings: ClusterSettingsLike
    registry: str | None = None
    cluster: str | None = None
    kubeconfig_existed: bool = True

    @property
    def anything(self) -> bool:
        return bool(self.registry or self.cluster)

    async def roll_back(self, steps: StepReporter) -> None:
        async with steps.step("rollback", "Roll back") as s:
            removed, failed = [], []
            if self.cluster:
                try:
                    await self.cli.delete_cluster(self.cluster)
                    removed.append(f"cluster {self.cluster}")
                except WasmdevError as err:
                    failed.append(f"cluster {self.cluster}: {err.what}")
            if self.registry:
                try:
                    await self.cli.delete_registry(self.registry)
                    removed.append(f"registry k3d-{self.registry}")
                except WasmdevError as err:
                    failed.append(f"registry k3d-{self.registry}: {err.what}")
            if self.cluster and not self.kubeconfig_existed:
                with suppress(FileNotFoundError):
                    self.settings.kubeconfig.unlink()
            s.done("removed " + ", ".join(removed) if removed else "nothing to remove")
            if failed:
                raise TargetUnavailable(
                    what="could not remove " + "; ".join(failed),
                    fix="remove them by hand: wasmdev cluster delete",
                )


async def _create_and_wait(
    settings: ClusterSettingsLike,
    cli: K3dCli,
    steps: StepReporter,
    opts: BootstrapOptions,
    cluster: ClusterInfo | None,
    registry: RegistryInfo | None,
    made: _Undo,
) -> ClusterEndpoint:
    notes: list[str] = []
    async with steps.step("nodeimage", "Node image") as s:
        image, runtime = await node_image_for_cluster(
            settings, s, cluster.raw if cluster else None, opts.node_image, opts.node_runtime
        )
    if runtime.spin is None:
        notes.append(
            f"which Spin the nodes run is unknown (node image {image}), so apps are not checked "
            "against it before a rollout; `wasmdev cluster image` builds a node image that says"
        )
    async with steps.step("registry", "Image registry") as s:
        if not settings.registry_name:
            s.skip("none configured: images go in with `k3d image import`")
        else:
            registry = await _ensure_registry(settings, cli, registry, made, opts.start_container)
            s.done(f"{registry.name}: push to {registry.push_host}, pods pull {registry.pull_host}")
            if cluster is not None and made.registry:
                # Nodes learn registry mirrors only at `cluster create --registry-use`.
                notes.append(
                    f"registry {registry.name} was created after cluster {settings.name}; if pods fail "
                    f"with ImagePullBackOff the nodes cannot reach it: {RECREATE}"
                )

    async with steps.step("cluster", "k3d cluster") as s:
        if cluster is None:
            s.note(f"creating {settings.name} from {image} (pulls the node image on first use)")
            made.kubeconfig_existed = settings.kubeconfig.exists()
            made.cluster = settings.name  # before the call: k3d may leave pieces if it is killed
            reg_use = [f"{registry.name}:{registry.host_port}"] if registry else []
            try:
                await cli.create_cluster(
                    settings.name,
                    image=image,
                    http_port=settings.http_port,
                    agents=settings.agents,
                    registry_use=reg_use,
                    api_port=settings.api_port,
                )
            except K3dCommandError as err:
                # k3d rolls its own part back (and a name clash means the cluster is someone
                # else's), so only the registry is ours to remove, unless k3d's rollback failed.
                if not (err.result and any("FAILED to rollback" in p for p in err.result.problems())):
                    made.cluster = None
                raise TargetUnavailable(
                    what=err.what,
                    where=err.where,
                    fix=f"check that Docker can pull the node image (`docker pull {image}`) "
                    "and has disk space, then run `wasmdev cluster create` again",
                ) from err
            cluster = await cli.get_cluster(settings.name)
            if cluster is None:
                raise TargetUnavailable(
                    what=f"k3d reported cluster {settings.name!r} created but does not list it",
                    fix=f"check `k3d cluster list`; then {RECREATE}",
                )
            s.done(f"created {settings.name}: {1 + settings.agents} node(s), http on :{settings.http_port}")
        else:
            if not cluster.running:
                s.note(f"starting the stopped cluster {settings.name}")
                await cli.start_cluster(settings.name)
            s.done(
                f"reusing {settings.name}: {cluster.servers_count} server(s), {cluster.agents_count} agent(s)"
            )
            if cluster.http_port is not None and cluster.http_port != settings.http_port:
                notes.append(
                    f"cluster {settings.name} serves HTTP on :{cluster.http_port}, not the configured "
                    f":{settings.http_port}; to change it: {RECREATE}"
                )

    async with steps.step("kubeconfig", "Kubeconfig") as s:
        await cli.write_kubeconfig(settings.name, settings.kubeconfig)
        s.done(f"{settings.kubeconfig} (context k3d-{settings.name}; ~/.kube/config untouched)")

    context = f"k3d-{settings.name}"
    factory = opts.probe_factory or default_probe
    probe = factory(settings.kubeconfig, context)
    expected = cluster.servers_count + cluster.agents_count
    try:
        async with steps.step("nodes", "Nodes Ready") as s:
            nodes = await wait_nodes_ready(probe, expected, opts.polling, s)
        async with steps.step("runtimeclass", "RuntimeClass") as s:
            s.done(await ensure_cluster_runtime_class(probe, settings.runtime_class, nodes, opts.polling))
    finally:
        close = getattr(probe, "close", None)  # the API client is needed only for these two waits
        if close is not None:
            await asyncio.to_thread(close)

    return ClusterEndpoint(
        name=settings.name,
        kubeconfig=settings.kubeconfig,
        context=context,
        http_port=cluster.http_port or settings.http_port,
        registry=registry,
        created_cluster=made.cluster is not None,
        created_registry=made.registry is not None,
        notes=tuple(notes),
        node_runtime=runtime,
    )


async def _ensure_registry(
    settings: ClusterSettingsLike,
    cli: K3dCli,
    registry: RegistryInfo | None,
    made: _Undo,
    start_container: Callable[[str], None],
) -> RegistryInfo:
    if registry is None:
        made.registry = settings.registry_name
        await cli.create_registry(settings.registry_name, settings.registry_port)
    elif not registry.running:
        # k3d v5.9 has no working `registry start` (the command is an empty stub); the registry
        # is a plain container, so Docker starts it.
        await asyncio.to_thread(start_container, registry.name)
    found = await cli.get_registry(settings.registry_name)
    if found is None or found.host_port is None:
        raise TargetUnavailable(
            what=f"registry k3d-{settings.registry_name} has no host port mapping",
            fix=f"k3d registry delete {settings.registry_name}; then wasmdev cluster create",
        )
    return found
