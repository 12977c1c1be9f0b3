"""``wasmdev cluster create | delete | status | image``: the cluster's lifecycle from the command line.

Each returns a process exit code and prints plain text (one line per step, no colours or cursor
tricks) so it reads the same in a terminal, a CI log or a pipe. ``cluster_create`` can instead
feed a store, so ``wasmdev up --target k3d`` shows the same steps in the dashboard.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import yaml

from devenv.errors import WasmdevError
from devenv.model import StepState, StepStatus
from devenv.store.actions import BootstrapStepChanged
from devenv.store.store import Store
from devenv.targets.cluster.bootstrap import (
    BootstrapOptions,
    ClusterEndpoint,
    ClusterSettingsLike,
    bootstrap_cluster,
    check_k3d,
    ping_docker,
)
from devenv.targets.cluster.k3d import ClusterInfo, K3dCli, RegistryInfo
from devenv.targets.cluster.node_image import (
    DEFAULT_K3S,
    DEFAULT_SHIM,
    ensure_node_image,
    inspect_runtime,
    server_image_id,
)
from devenv.targets.cluster.node_readiness import KubernetesProbe, first_line
from devenv.targets.cluster.resources import managed_selector

Printer = Callable[[str], None]


def print_line(text: str) -> None:
    print(text, flush=True)


class StepPrinter:
    """Turns step states into lines: one when a step starts, one per progress note, one at the end
    (which names the outcome, unless the last progress note already said it)."""

    MARKS = {StepStatus.DONE: "ok", StepStatus.FAILED: "FAILED", StepStatus.SKIPPED: "skip"}

    def __init__(self, printer: Printer) -> None:
        self.printer = printer
        self._printed_note: dict[str, str] = {}

    def __call__(self, step: StepState) -> None:
        if step.status is StepStatus.PENDING:
            return  # the plan itself is not news on a terminal
        if step.status is StepStatus.RUNNING:
            if step.key not in self._printed_note:
                self._printed_note[step.key] = ""
                self.printer(f"  ..   {step.title}")
            if step.detail and step.detail != self._printed_note[step.key]:
                self._printed_note[step.key] = step.detail
                self.printer(f"       {step.detail}")
            return
        elapsed = ""
        if step.started_at is not None and step.finished_at is not None:
            elapsed = f" ({step.finished_at - step.started_at:.1f}s)"
        repeated = step.detail == self._printed_note.pop(step.key, None)
        detail = f": {step.detail}" if step.detail and not repeated else ""
        self.printer(f"  {self.MARKS.get(step.status, step.status.value):<4} {step.title}{detail}{elapsed}")
        if step.status is StepStatus.FAILED and step.fix:
            self.printer(f"       fix: {step.fix}")


def _sink_for(out: Store | Printer | None) -> tuple[Callable[[StepState], None], Printer]:
    if isinstance(out, Store):
        store = out
        return (lambda step: store.dispatch(BootstrapStepChanged(step))), (lambda _text: None)
    printer = out or print_line
    return StepPrinter(printer), printer


async def cluster_create(
    settings: ClusterSettingsLike,
    out: Store | Printer | None = None,
    *,
    cli: K3dCli | None = None,
    options: BootstrapOptions | None = None,
) -> int:
    """Create or reuse the cluster and wait until it can run Spin pods; 0 on success, 1 if not."""
    sink, printer = _sink_for(out)
    image = (
        settings.image
        or f"built from shim {settings.shim or DEFAULT_SHIM}, k3s {settings.k3s or DEFAULT_K3S}"
    )
    printer(f"wasmdev cluster {settings.name} (k3d, node image {image})")
    try:
        endpoint = await bootstrap_cluster(settings, sink, cli=cli, options=options)
    except WasmdevError as err:
        printer(f"error: {err.what}")
        if err.fix:
            printer(f"  fix: {err.fix}")
        return 1
    for line in summary_lines(endpoint):
        printer(line)
    return 0


async def cluster_image(settings: ClusterSettingsLike, printer: Printer | None = None) -> int:
    """Build (or reuse) the k3d node image for [cluster].shim and .k3s; the last word printed is
    its reference, so scripts can take it: ``k3d cluster create --image $(wasmdev cluster image | tail -1 | awk '{print $NF}')``."""
    say = printer or print_line
    shim, k3s = settings.shim or DEFAULT_SHIM, settings.k3s or DEFAULT_K3S
    say(f"k3d node image: rancher/k3s:{k3s} + containerd-shim-spin {shim}")
    try:
        image = await asyncio.to_thread(ensure_node_image, shim, k3s, progress=lambda text: say(f"  {text}"))
    except WasmdevError as err:
        say(f"error: {err.what}")
        if err.fix:
            say(f"  fix: {err.fix}")
        return 1
    if settings.image:
        say(f"note: [cluster].image = {settings.image} is set, so `cluster create` uses that, not this image")
    verb = "built" if image.built else "reused"
    say(f"{verb} node image ({image.runtime.describe()}): {image.ref}")
    return 0


def summary_lines(endpoint: ClusterEndpoint) -> list[str]:
    verb = "created" if endpoint.created_cluster else "ready (reused)"
    lines = [
        f"cluster {endpoint.name} {verb}",
        f"  apps:       http://<app>.localhost:{endpoint.http_port}/",
        f"  kubeconfig: {endpoint.kubeconfig} (context {endpoint.context})",
        f"  kubectl:    kubectl --kubeconfig {endpoint.kubeconfig} get pods -A",
    ]
    if endpoint.node_runtime is not None:
        lines.append(f"  nodes run:  {endpoint.node_runtime.describe()}")
    if endpoint.registry is not None:
        lines.append(
            f"  registry:   push to {endpoint.registry.push_host}, pods pull from {endpoint.registry.pull_host}"
        )
    lines += [f"  note: {n}" for n in endpoint.notes]
    return lines


async def cluster_delete(
    settings: ClusterSettingsLike,
    printer: Printer | None = None,
    *,
    cli: K3dCli | None = None,
    docker_ping: Callable[[], None] = ping_docker,
) -> int:
    """Remove the cluster, its registry and wasmdev's kubeconfig for it. Absent pieces are fine."""
    say = printer or print_line
    cli = cli or K3dCli(settings.kubeconfig)
    try:
        await asyncio.to_thread(docker_ping)  # k3d's own message for this is a Docker API error
        await check_k3d(cli)
        cluster = await cli.get_cluster(settings.name)
        if cluster is not None:
            await cli.delete_cluster(settings.name)  # KUBECONFIG is ours: only our file is edited
            say(f"deleted cluster {settings.name}")
        else:
            say(f"no cluster {settings.name}")
        registry = await cli.get_registry(settings.registry_name) if settings.registry_name else None
        if registry is not None:
            await cli.delete_registry(registry.name)
            say(f"deleted registry {registry.name}")
    except WasmdevError as err:
        say(f"error: {err.what}")
        if err.fix:
            say(f"  fix: {err.fix}")
        return 1
    if _remove_kubeconfig_if_empty(settings.kubeconfig, f"k3d-{settings.name}"):
        say(f"removed {settings.kubeconfig}")
    return 0


def _remove_kubeconfig_if_empty(path: Path, context: str) -> bool:
    """Delete the kubeconfig file once it holds nothing but (at most) this cluster's entries.

    The file is wasmdev's own by default, but the user may have pointed [cluster].kubeconfig at a
    file with other clusters; then only k3d's removal of k3d-NAME (done on delete) applies.
    """
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return False
    except yaml.YAMLError:
        return False
    others = [
        entry
        for section in ("clusters", "contexts", "users")
        for entry in doc.get(section) or []
        if entry.get("name") not in (context, f"admin@{context}")
    ]
    if others:
        return False
    path.unlink()
    return True


async def cluster_status(
    settings: ClusterSettingsLike,
    printer: Printer | None = None,
    *,
    cli: K3dCli | None = None,
    docker_ping: Callable[[], None] = ping_docker,
) -> int:
    """Print the cluster, registry, nodes, runtime classes and wasmdev's apps.

    Exits 0 when the cluster is running and its API answers, 1 otherwise, so scripts can do
    ``wasmdev cluster status || wasmdev cluster create``.
    """
    say = printer or print_line
    cli = cli or K3dCli(settings.kubeconfig)
    try:
        await asyncio.to_thread(docker_ping)
        await check_k3d(cli)
        cluster = await cli.get_cluster(settings.name)
        registry = await cli.get_registry(settings.registry_name) if settings.registry_name else None
    except WasmdevError as err:
        say(f"error: {err.what}")
        if err.fix:
            say(f"  fix: {err.fix}")
        return 1
    say(_cluster_line(settings, cluster))
    if cluster is not None:
        image = server_image_id(cluster.raw) or settings.image
        runtime = await asyncio.to_thread(inspect_runtime, image) if image else None
        say(f"node runtime {runtime.describe() if runtime else 'unknown (k3d reports no node image)'}")
    say(_registry_line(settings, registry))
    if cluster is None or not cluster.running:
        return 1
    say(f"kubeconfig  {settings.kubeconfig} (context k3d-{settings.name})")
    if not settings.kubeconfig.exists():
        say("  (missing: `wasmdev cluster create` writes it again and reuses the cluster)")
        return 1
    probe = KubernetesProbe(settings.kubeconfig, f"k3d-{settings.name}", request_timeout=5.0)
    try:
        report = await asyncio.to_thread(_kube_report, probe, settings.namespace)
    except Exception as exc:  # the API is down or the kubeconfig is stale; say so, don't trace
        say(f"kubernetes  not answering: {first_line(exc)}")
        return 1
    finally:
        probe.close()
    for line in report:
        say(line)
    return 0


def _cluster_line(settings: ClusterSettingsLike, cluster: ClusterInfo | None) -> str:
    if cluster is None:
        return f"cluster     {settings.name}: not created (run `wasmdev cluster create`)"
    state = "running" if cluster.running else "stopped (`wasmdev cluster create` starts it)"
    http = f", http :{cluster.http_port}" if cluster.http_port else ""
    api = f", api :{cluster.api_port}" if cluster.api_port else ""
    return (
        f"cluster     {settings.name}: {state}, {cluster.servers_count} server(s), "
        f"{cluster.agents_count} agent(s){http}{api}"
    )


def _registry_line(settings: ClusterSettingsLike, registry: RegistryInfo | None) -> str:
    if not settings.registry_name:
        return "registry    none configured (images go in with `k3d image import`)"
    if registry is None:
        return f"registry    k3d-{settings.registry_name}: not created"
    state = "running" if registry.running else "stopped"
    return f"registry    {registry.name}: {state}, push {registry.push_host}, pods pull {registry.pull_host}"


def _kube_report(probe: KubernetesProbe, namespace: str) -> list[str]:
    from kubernetes import client

    api = probe.api_client()
    lines = ["nodes"]
    for node in probe.nodes():
        meta, status = node.get("metadata", {}), node.get("status", {})
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        version = (status.get("nodeInfo") or {}).get("kubeletVersion", "")
        handlers = [h.get("name", "") for h in status.get("runtimeHandlers") or [] if h.get("name")]
        runtimes = f"  runtimes: {', '.join(handlers)}" if handlers else ""
        lines.append(
            f"  {meta.get('name', '?'):<28} {'Ready' if ready else 'NotReady':<9} {version}{runtimes}"
        )
    lines.append("runtime classes")
    classes = client.NodeV1Api(api).list_runtime_class(_request_timeout=probe.request_timeout).items
    for rc in classes or []:
        lines.append(f"  {rc.metadata.name:<28} handler {rc.handler}")
    if not classes:
        lines.append("  (none yet)")
    deployments = (
        client.AppsV1Api(api)
        .list_namespaced_deployment(
            namespace, label_selector=managed_selector(), _request_timeout=probe.request_timeout
        )
        .items
    )
    lines.append(f"apps (namespace {namespace})")
    for d in deployments or []:
        lines.append("  " + _deployment_line(d))
    if not deployments:
        lines.append("  (none deployed by wasmdev)")
    return lines


def _deployment_line(d: Any) -> str:
    want = d.spec.replicas if d.spec and d.spec.replicas is not None else 1
    ready = (d.status.ready_replicas if d.status else None) or 0
    containers = (
        d.spec.template.spec.containers if d.spec and d.spec.template and d.spec.template.spec else []
    )
    image = containers[0].image if containers else "?"
    return f"{d.metadata.name:<28} {ready}/{want} ready  {image}"


def run(coro_fn: Callable[..., Any], *args: Any) -> int:
    """Run one of the commands above from synchronous CLI code."""
    with suppress(KeyboardInterrupt):
        return int(asyncio.run(coro_fn(*args)))
    print("interrupted", file=sys.stderr)
    return 130
