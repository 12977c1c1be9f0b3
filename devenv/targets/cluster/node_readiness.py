"""Kubernetes readiness after k3d returns: nodes Ready and the Spin RuntimeClass in place.

k3d's ``--wait`` only waits for log lines in the node containers; the API server may not answer
yet, nodes may be NotReady, and ``node.k8s.io`` may not be served. These waits poll through the
real kubernetes client (blocking, so from a thread) until the cluster can take a Spin pod.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from devenv.errors import TargetUnavailable, WasmdevError
from devenv.targets.cluster.resources import runtime_class as runtime_class_manifest
from devenv.targets.cluster.runtimeclass import KNOWN_HANDLERS
from devenv.targets.cluster.steps import StepHandle

SHIM_HANDLER = "spin"  # the runtime k3s registers when it finds containerd-shim-spin-v2 on PATH
RECREATE = "wasmdev cluster delete && wasmdev cluster create"


class KubeProbe(Protocol):
    """The Kubernetes reads and writes bootstrap needs; blocking, called from a thread."""

    def nodes(self) -> list[dict[str, Any]]: ...

    def ensure_runtime_class(self, name: str, handler: str) -> bool: ...


ProbeFactory = Callable[[Path, str], KubeProbe]


@dataclass(frozen=True)
class Polling:
    timeout: float = 180.0
    interval: float = 1.0


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class KubernetesProbe:
    """KubeProbe over the kubernetes client, for the k3d context in wasmdev's kubeconfig."""

    def __init__(self, kubeconfig: Path, context: str, request_timeout: float = 10.0) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.request_timeout = request_timeout
        self._api: Any = None

    def api_client(self) -> Any:
        if self._api is None:
            from kubernetes import config

            # Explicit file and context: the user's KUBECONFIG and current context play no part.
            self._api = config.new_client_from_config(config_file=str(self.kubeconfig), context=self.context)
        return self._api

    def close(self) -> None:
        """Close the ApiClient (its worker pool and connections), if one was made."""
        if self._api is not None:
            self._api.close()
            self._api = None

    def nodes(self) -> list[dict[str, Any]]:
        from kubernetes import client

        api = self.api_client()
        items = client.CoreV1Api(api).list_node(_request_timeout=self.request_timeout).items
        return [api.sanitize_for_serialization(n) for n in items]

    def ensure_runtime_class(self, name: str, handler: str) -> bool:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        node_api = client.NodeV1Api(self.api_client())
        try:
            existing = node_api.read_runtime_class(name, _request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
        else:
            if existing.handler != handler:
                # The handler field is immutable, so it cannot be fixed in place.
                raise TargetUnavailable(
                    what=f"RuntimeClass {name} exists with handler {existing.handler!r}, not {handler!r}",
                    fix=f"kubectl --kubeconfig {self.kubeconfig} delete runtimeclass {name}; then wasmdev cluster create",
                )
            return False
        body = runtime_class_manifest(name, handler)  # labelled managed-by wasmdev
        try:
            node_api.create_runtime_class(body, _request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status != 409:  # created meanwhile by someone else: fine, re-read next round
                raise
            return self.ensure_runtime_class(name, handler)
        return True


def _node_ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def _poll(
    polling: Polling, attempt: Callable[[], Awaitable[bool]], timeout_error: Callable[[], WasmdevError]
) -> None:
    deadline = time.monotonic() + polling.timeout
    while not await attempt():
        if time.monotonic() >= deadline:
            raise timeout_error()
        await asyncio.sleep(polling.interval)


async def wait_nodes_ready(
    probe: KubeProbe, expected: int, polling: Polling, s: StepHandle
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    last_error = ""

    async def attempt() -> bool:
        nonlocal seen, last_error
        try:
            seen = await asyncio.to_thread(probe.nodes)
        except Exception as exc:  # the API server is often not serving yet right after k3d returns
            last_error = first_line(exc)
            s.note(f"waiting for the API server ({last_error})")
            return False
        ready = sum(1 for n in seen if _node_ready(n))
        s.note(f"{ready}/{max(expected, len(seen))} Ready")
        return ready >= max(expected, 1) and ready == len(seen)

    def timeout() -> WasmdevError:
        not_ready = [n.get("metadata", {}).get("name", "?") for n in seen if not _node_ready(n)]
        what = (
            f"nodes not Ready after {polling.timeout:.0f}s: {', '.join(not_ready)}"
            if seen
            else f"the Kubernetes API did not answer within {polling.timeout:.0f}s ({last_error or 'no nodes'})"
        )
        return TargetUnavailable(what=what, fix="look at `docker logs k3d-<name>-server-0`; then " + RECREATE)

    await _poll(polling, attempt, timeout)
    return seen


def _runtime_handlers(node: dict[str, Any]) -> list[str] | None:
    """The runtimes containerd reported for a node (status.runtimeHandlers, Kubernetes ≥ 1.30);
    None when the node does not say, which is not evidence either way."""
    handlers = (node.get("status") or {}).get("runtimeHandlers")
    if not handlers:
        return None
    return [h.get("name", "") for h in handlers]


def runtime_handler(runtime_class: str) -> str:
    """The containerd handler of a RuntimeClass wasmdev may create; a config error otherwise."""
    handler = KNOWN_HANDLERS.get(runtime_class)
    if handler is None:
        raise TargetUnavailable(
            what=f"wasmdev does not know the containerd handler of RuntimeClass {runtime_class!r}",
            where="wasmdev.toml [cluster] runtime_class",
            fix=f"use one of: {', '.join(sorted(KNOWN_HANDLERS))} (default wasmtime-spin-v2)",
        )
    return handler


async def ensure_cluster_runtime_class(
    probe: KubeProbe, name: str, nodes: list[dict[str, Any]], polling: Polling
) -> str:
    """Create (or find) RuntimeClass ``name``, after checking the nodes report its handler."""
    handler = runtime_handler(name)
    lacking = [
        n.get("metadata", {}).get("name", "?")
        for n in nodes
        if (h := _runtime_handlers(n)) is not None and handler not in h
    ]
    if lacking:
        shim = "containerd-shim-spin" if handler == SHIM_HANDLER else f"the {handler} shim"
        raise TargetUnavailable(
            what=f"node(s) {', '.join(lacking)} have no {handler!r} runtime: the node image lacks {shim}",
            fix="use a node image with the shim (--image / [cluster].image, default "
            "ghcr.io/spinframework/containerd-shim-spin/k3d:v0.24.0); then " + RECREATE,
        )
    created = False
    last_error = ""

    async def attempt() -> bool:
        nonlocal created, last_error
        try:
            created = await asyncio.to_thread(probe.ensure_runtime_class, name, handler)
            return True
        except WasmdevError:
            raise
        except Exception as exc:  # node.k8s.io may not be served yet on a fresh API server
            last_error = first_line(exc)
            return False

    def timeout() -> WasmdevError:
        return TargetUnavailable(
            what=f"could not create RuntimeClass {name}: {last_error}",
            fix=f"check `kubectl --kubeconfig <kubeconfig> get runtimeclass`; then {RECREATE}",
        )

    await _poll(polling, attempt, timeout)
    return f"{name} → handler {handler} ({'created' if created else 'present'})"
