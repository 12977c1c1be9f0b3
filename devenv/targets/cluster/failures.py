"""Why a rollout's pods are not coming up: pure diagnosis from pod status and events.

Pods and events are plain dicts in the API's own camelCase shape (what ``kubectl get -o json``
shows), so the rules read like the messages users search for. The causes and fixes come from the
failures seen with k3d and containerd-shim-spin (image pulls over https from a plain-http
registry, the shim exiting 137 when the Spin app cannot start, ``no runtime for "spin"``, a
RuntimeClass nodeSelector no node matches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

SHIM_NODE_IMAGE = "ghcr.io/spinframework/containerd-shim-spin/k3d:v0.24.0"


@dataclass(frozen=True)
class Failure:
    pod: str
    reason: str  # ImagePullBackOff, CrashLoopBackOff, NoRuntimeHandler, Unschedulable, …
    message: str  # what Kubernetes said
    cause: str  # the likely cause, in wasmdev's words
    fix: str
    events: tuple[str, ...] = ()  # "Warning Failed: …" lines for the UI
    wants_logs: bool = False  # a crash: the container's last logs explain it
    logs: tuple[str, ...] = field(default=())


def event_lines(events: Sequence[Obj], limit: int = 8) -> tuple[str, ...]:
    """The newest events first, one line each, repeats counted (what ``kubectl describe`` shows)."""
    ordered = sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "", reverse=True)
    lines = []
    for e in ordered[:limit]:
        count = e.get("count") or 1
        times = f" (x{count})" if count > 1 else ""
        lines.append(
            f"{e.get('type', 'Normal')} {e.get('reason', '')}{times}: {e.get('message', '')}".strip()
        )
    return tuple(lines)


def _container_statuses(pod: Obj) -> list[Obj]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def _pull_cause(image: str, message: str) -> tuple[str, str]:
    host = image.split("/", 1)[0] if "/" in image else "docker.io"
    if "server gave HTTP response to HTTPS client" in message:
        return (
            f"the node pulled {host} over https, but that registry speaks plain http: the node's "
            f"containerd has no mirror entry for '{host}'",
            # k3d mirrors the registry's *container* name, and the two ways of making one name it
            # differently: `k3d registry create NAME` makes k3d-NAME (what wasmdev uses),
            # `--registry-create NAME` makes NAME.
            "use the registry address the nodes mirror (k3d: 'REGISTRY-NAME:5000', with the container "
            "name `k3d registry list` shows: k3d-NAME for `k3d registry create NAME`, NAME for "
            f"`--registry-create NAME`; never 'localhost'); on another cluster, add '{host}' as an "
            "insecure registry in the nodes' containerd config or use a TLS registry",
        )
    if "not found" in message or "manifest unknown" in message:
        return (
            f"the image is not in the registry the node pulls from ({host})",
            "check that wasmdev pushes to the same registry the nodes pull from (--registry / "
            "wasmdev.toml [kube] registry) and that the push succeeded",
        )
    if "no match for platform" in message:
        return (
            "the image has no manifest for the node's platform",
            "package for the node's OS/architecture (wasmdev publishes linux/amd64 and linux/arm64)",
        )
    if any(s in message for s in ("no such host", "connection refused", "dial tcp", "i/o timeout")):
        local = " ('localhost' inside a pod is the node itself)" if host.startswith("localhost") else ""
        return (
            f"the node cannot reach the registry at {host}{local}",
            "use an address the nodes can resolve and reach (k3d: the registry's container name, e.g. NAME:5000)",
        )
    if any(s in message for s in ("unauthorized", "401", "403", "denied")):
        return (
            f"the registry {host} refused the node's pull",
            "give the Deployment an imagePullSecret for that registry, or make the repository public",
        )
    return (f"the node could not pull {image}", "check the registry address and that the image was pushed")


def _crash(pod_name: str, cs: Obj) -> Failure | None:
    waiting = (cs.get("state") or {}).get("waiting") or {}
    last = (cs.get("lastState") or {}).get("terminated") or {}
    restarts = int(cs.get("restartCount") or 0)
    if waiting.get("reason") != "CrashLoopBackOff" and not (restarts >= 2 and last):
        return None
    code = last.get("exitCode")
    detail = f"exit code {code}" + (f" ({last.get('reason')})" if last.get("reason") else "")
    return Failure(
        pod=pod_name,
        reason="CrashLoopBackOff",
        message=f"container {cs.get('name', '')} restarted {restarts} times, last {detail}",
        cause="the Spin app failed to start in the shim"
        + (" (runwasi exits 137 when the app fails)" if code == 137 else "")
        + ": e.g. a missing variable, a bad spin.toml, or a trigger the shim does not support",
        fix="read the pod's logs below; run the app with the local target (wasmdev up) to see the same error",
        wants_logs=True,
    )


def diagnose(pod: Obj, events: Sequence[Obj], *, scheduling_stuck: bool = False) -> Failure | None:
    """The failure this pod shows, or None while it may still come up.

    ``scheduling_stuck`` says the pod has been unschedulable for longer than the grace period the
    caller allows (the scheduler retries, and a new node may come); before that it is not a failure.
    """
    name = (pod.get("metadata") or {}).get("name", "")
    lines = event_lines(events)
    for e in events:
        msg = e.get("message") or ""
        if e.get("reason") == "FailedCreatePodSandBox" and "no runtime for" in msg:
            handler = msg.split('no runtime for "', 1)[-1].split('"', 1)[0]
            runtime_class = (pod.get("spec") or {}).get("runtimeClassName", "")
            return Failure(
                pod=name,
                reason="NoRuntimeHandler",
                message=msg,
                cause=f'the node\'s containerd has no runtime "{handler}" (RuntimeClass "{runtime_class}" '
                "asks for it): the node image lacks containerd-shim-spin, or the RuntimeClass handler "
                "does not match the runtime name containerd registered",
                fix=f"k3d: create the cluster with the shim node image ({SHIM_NODE_IMAGE}); other clusters: "
                "install the Spin shim on the nodes (e.g. SpinKube's runtime-class-manager, an AKS Wasm node "
                "pool) or pick a RuntimeClass whose handler exists (kubectl get runtimeclass)",
                events=lines,
            )
    for cs in _container_statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in ("ErrImagePull", "ImagePullBackOff"):
            image = cs.get("image", "")
            # The back-off message only repeats the image name; the cause is in the Failed event.
            pull_msgs = [e.get("message", "") for e in events if e.get("reason") == "Failed"]
            message = next((m for m in pull_msgs if "Failed to pull image" in m), waiting.get("message", ""))
            cause, fix = _pull_cause(image, message)
            return Failure(name, reason, message, cause, fix, events=lines)
        if reason in (
            "InvalidImageName",
            "CreateContainerConfigError",
            "CreateContainerError",
            "RunContainerError",
        ):
            return Failure(
                name,
                reason,
                waiting.get("message", ""),
                "the container could not be created",
                "see the message and events; check the image name and the Deployment's env and mounts",
                events=lines,
            )
        crash = _crash(name, cs)
        if crash is not None:
            return Failure(**{**crash.__dict__, "events": lines})
    if scheduling_stuck:
        msg = next((e.get("message", "") for e in events if e.get("reason") == "FailedScheduling"), "")
        return Failure(
            pod=name,
            reason="Unschedulable",
            message=msg or "the pod stays Pending: no node accepted it",
            cause="no node matches the pod: a RuntimeClass scheduling.nodeSelector (e.g. spin-enabled=true, "
            "which k3d nodes lack), or not enough CPU/memory for the requests",
            fix="label the shim nodes (kubectl label node NODE spin-enabled=true), use a RuntimeClass without "
            "a nodeSelector (wasmtime-spin-v2), or lower the app's requests in wasmdev.toml",
            events=lines,
        )
    return None


def deployment_failure(deploy: Obj) -> Failure | None:
    """Failures the Deployment itself reports: its ReplicaSet cannot create pods (admission said
    no: a missing RuntimeClass, a quota, a policy), or the progress deadline passed."""
    name = (deploy.get("metadata") or {}).get("name", "")
    for cond in (deploy.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            message = cond.get("message", "")
            if "RuntimeClass" in message and "not found" in message:
                cause = "the pod names a RuntimeClass the cluster does not have (deleted, or never created)"
                fix = "create it (wasmdev does on start for the classes it knows) or pick one: kubectl get runtimeclass"
            else:
                cause = (
                    "the cluster refused to create the pods (admission: quota, policy, or a missing object)"
                )
                fix = "read the message; kubectl describe replicaset shows the same"
            return Failure(
                pod=name, reason=cond.get("reason") or "FailedCreate", message=message, cause=cause, fix=fix
            )
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Failure(
                pod=name,
                reason="ProgressDeadlineExceeded",
                message=cond.get("message", ""),
                cause="the new pods did not become Ready within the Deployment's progress deadline",
                fix="check the pods' events and logs (kubectl describe pod)",
            )
    return None


def is_unschedulable(pod: Obj, events: Sequence[Obj]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    if any(c.get("type") == "PodScheduled" and c.get("status") == "False" for c in conditions):
        return True
    return any(e.get("reason") == "FailedScheduling" for e in events)


def is_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_summary(pod: Obj) -> str:
    """``NAME Pending (ContainerCreating)``: one line for timeouts and the UI."""
    name = (pod.get("metadata") or {}).get("name", "")
    phase = (pod.get("status") or {}).get("phase", "Unknown")
    reasons = [
        ((cs.get("state") or {}).get("waiting") or {}).get("reason", "") for cs in _container_statuses(pod)
    ]
    reasons = [r for r in reasons if r]
    ready = " Ready" if is_ready(pod) else ""
    return f"{name} {phase}{ready}" + (f" ({', '.join(reasons)})" if reasons else "")
