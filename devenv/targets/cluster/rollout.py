"""Applying manifests and waiting for a Deployment's rollout, with failures explained.

Blocking (the kubernetes client is synchronous): call these from a worker thread. Manifests go in
with server-side apply under the field manager ``wasmdev``, so re-applying the same app is
idempotent and fields other tools own (an HPA's replicas, a mesh's annotations) are left alone
unless wasmdev itself sets them.

A rollout is done when the Deployment controller has seen the new spec and the pods of the new
build (label ``wasmdev.dev/build``) are Ready in the wanted number. The old pods are not waited
for: with ``maxUnavailable: 0`` they serve until the new ones are Ready and then leave the
Service's endpoints. While waiting, each new pod's status and events are diagnosed
(``failures.diagnose``); a failure ends the wait at once with the cause, not at the timeout.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from devenv.errors import DeployError
from devenv.targets.cluster.failures import (
    Failure,
    deployment_failure,
    diagnose,
    is_ready,
    is_unschedulable,
    pod_summary,
)
from devenv.targets.cluster.resources import (
    BUILD_LABEL,
    CONTAINER_NAME,
    FIELD_MANAGER,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    Manifest,
    managed_selector,
)

Obj = dict[str, Any]
APPLY = "application/apply-patch+yaml"


class KubeApis:
    """The typed API groups wasmdev uses, over one ApiClient (one connection pool).

    Each group is created on first use: importing ``CoreV1Api`` takes seconds (its module is
    ~50k lines of validated methods), and first use happens in a worker thread, so building a
    target on the event loop does not freeze the UI.
    """

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self.client = api_client

    @cached_property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.client)

    @cached_property
    def apps(self) -> kubernetes.client.AppsV1Api:
        return kubernetes.client.AppsV1Api(self.client)

    @cached_property
    def networking(self) -> kubernetes.client.NetworkingV1Api:
        return kubernetes.client.NetworkingV1Api(self.client)

    @cached_property
    def node(self) -> kubernetes.client.NodeV1Api:
        return kubernetes.client.NodeV1Api(self.client)

    @cached_property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.client)

    @property
    def host(self) -> str:
        return str(self.client.configuration.host)

    def plain(self, obj: Any) -> Obj:
        """A typed model as the API's own camelCase dict."""
        return self.client.sanitize_for_serialization(obj)


def api_error_text(err: BaseException) -> str:
    """The API server's own message (``deployments.apps "x" is forbidden: …``), or the transport error."""
    if isinstance(err, ApiException):
        try:
            body = json.loads(err.body or "{}")
            message = body.get("message") or err.reason
        except (ValueError, AttributeError):
            message = err.reason or str(err.body)
        return f"HTTP {err.status}: {message}"
    return f"{type(err).__name__}: {err}"


def apply(apis: KubeApis, manifest: Manifest, *, timeout: float = 30.0) -> Obj:
    """Server-side apply one manifest (Deployment, Service, Ingress or RuntimeClass); returns the result."""
    kind = manifest["kind"]
    name = manifest["metadata"]["name"]
    ns = manifest["metadata"].get("namespace", "")
    opts = {
        "field_manager": FIELD_MANAGER,
        "force": True,
        "_content_type": APPLY,
        "_request_timeout": timeout,
    }
    calls: dict[str, Callable[[], Any]] = {
        "Deployment": lambda: apis.apps.patch_namespaced_deployment(name, ns, manifest, **opts),
        "Service": lambda: apis.core.patch_namespaced_service(name, ns, manifest, **opts),
        "Ingress": lambda: apis.networking.patch_namespaced_ingress(name, ns, manifest, **opts),
        "RuntimeClass": lambda: apis.node.patch_runtime_class(name, manifest, **opts),
    }
    if kind not in calls:
        raise ValueError(f"wasmdev does not apply {kind} objects")
    return apis.plain(calls[kind]())


def serving_deployment(
    apis: KubeApis, namespace: str, name: str, timeout: float = 15.0
) -> tuple[Manifest, str] | None:
    """wasmdev's Deployment ``name`` as a manifest to re-apply, and its build, if it is fully rolled out.

    This is what a failed rollout goes back to when this session has not deployed the app yet
    (wasmdev restarted; the cluster kept serving). A Deployment still rolling out, or not
    wasmdev's, is not "the previous version" and gives None.
    """
    try:
        current = apis.plain(apis.apps.read_namespaced_deployment(name, namespace, _request_timeout=timeout))
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    meta, spec, status = current.get("metadata") or {}, current.get("spec") or {}, current.get("status") or {}
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        return None
    want = int(spec.get("replicas") or 1)
    settled = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    counts = (status.get("updatedReplicas"), status.get("availableReplicas"), status.get("replicas"))
    if not settled or any(int(c or 0) != want for c in counts):
        return None
    build = ((spec.get("template") or {}).get("metadata") or {}).get("labels", {}).get(BUILD_LABEL, "")
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }
    return manifest, build or "unknown"


@dataclass(frozen=True)
class RolloutPolicy:
    timeout_s: float = 180.0  # the whole wait, pulls included
    # A rollout on a local cluster is Ready in well under a second, and a flat 0.5 s poll was most
    # of the edit-to-serving time (bench/cluster_deploy.py: 637 ms -> 230 ms polling at 0.1 s).
    # Polls start fast and back off to poll_s, so a slow rollout on a shared cluster stays cheap.
    first_poll_s: float = 0.1
    poll_s: float = 0.5
    scheduling_grace_s: float = 15.0  # unschedulable this long is a failure, not a wait
    request_timeout_s: float = 15.0


class RolloutFailed(Exception):
    """The new pods will not come up (``failure`` says why), or not within the timeout."""

    def __init__(
        self,
        failure: Failure | None,
        pods: list[str],
        *,
        cancelled: bool = False,
        unreachable: str = "",
    ) -> None:
        super().__init__(failure.reason if failure else "cancelled" if cancelled else "timeout")
        self.failure = failure
        self.pods = pods  # one summary line per new pod, as last seen
        self.cancelled = cancelled
        self.unreachable = unreachable  # the API server's last transport error, when it went away


def _pod_events(apis: KubeApis, namespace: str, pod: str, timeout: float) -> list[Obj]:
    events = apis.core.list_namespaced_event(
        namespace,
        field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod}",
        _request_timeout=timeout,
    )
    return [apis.plain(e) for e in events.items]


def _crash_logs(apis: KubeApis, namespace: str, pod: str, timeout: float, lines: int = 20) -> tuple[str, ...]:
    """The crashed container's last lines (``previous``), or the current ones when there is no previous."""
    for previous in (True, False):
        try:
            text = apis.core.read_namespaced_pod_log(
                pod,
                namespace,
                container=CONTAINER_NAME,
                previous=previous,
                tail_lines=lines,
                _request_timeout=timeout,
            )
        except ApiException:
            continue
        if text:
            return tuple(str(text).splitlines()[-lines:])
    return ("(the container wrote no logs: runwasi prints nothing when the app fails to load)",)


def wait_for_rollout(
    apis: KubeApis,
    namespace: str,
    name: str,
    app: str,
    build: str,
    replicas: int,
    policy: RolloutPolicy,
    cancelled: threading.Event | None = None,
) -> list[Obj]:
    """Block until ``replicas`` pods of ``build`` are Ready; returns them. Raises ``RolloutFailed``.

    The API server may blink (a k3s restart, a laptop waking up): transport errors are retried
    until the deadline, and reported in the error if it passes.
    """
    deadline = time.monotonic() + policy.timeout_s
    unschedulable_since: dict[str, float] = {}
    summaries: list[str] = []
    unreachable = ""
    interval = min(policy.first_poll_s, policy.poll_s)
    while True:
        if cancelled is not None and cancelled.is_set():
            raise RolloutFailed(None, summaries, cancelled=True)
        try:
            ready = _poll(apis, namespace, name, app, build, replicas, policy, unschedulable_since, summaries)
            unreachable = ""
        except (ApiException, RolloutFailed):
            raise
        except Exception as err:  # noqa: BLE001 - urllib3/socket errors: the server is away
            unreachable = api_error_text(err)
            ready = None
        if ready is not None:
            return ready
        if time.monotonic() >= deadline:
            raise RolloutFailed(None, summaries, unreachable=unreachable)
        if cancelled is not None:
            cancelled.wait(interval)
        else:
            time.sleep(interval)
        interval = min(policy.poll_s, interval * 1.5)


def _poll(
    apis: KubeApis,
    namespace: str,
    name: str,
    app: str,
    build: str,
    replicas: int,
    policy: RolloutPolicy,
    unschedulable_since: dict[str, float],
    summaries: list[str],
) -> list[Obj] | None:
    """One look: the Ready pods when done, None to keep waiting; raises RolloutFailed on a failure."""
    t = policy.request_timeout_s
    deploy = apis.plain(apis.apps.read_namespaced_deployment(name, namespace, _request_timeout=t))
    status = deploy.get("status") or {}
    observed = int(status.get("observedGeneration") or 0) >= int(deploy["metadata"].get("generation") or 0)
    selector = f"{managed_selector(app)},{BUILD_LABEL}={build}"
    listed = apis.core.list_namespaced_pod(namespace, label_selector=selector, _request_timeout=t)
    pods = [apis.plain(p) for p in listed.items]
    pods = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    summaries[:] = [pod_summary(p) for p in pods]
    ready = [p for p in pods if is_ready(p)]
    if observed and len(ready) >= replicas:
        return ready
    if observed and (failed := deployment_failure(deploy)) is not None:
        raise RolloutFailed(failed, list(summaries))
    now = time.monotonic()
    for pod in pods:
        if is_ready(pod):
            continue
        pod_name = pod["metadata"]["name"]
        events = _pod_events(apis, namespace, pod_name, t)
        stuck = False
        if is_unschedulable(pod, events):
            since = unschedulable_since.setdefault(pod_name, now)
            stuck = now - since >= policy.scheduling_grace_s
        failure = diagnose(pod, events, scheduling_stuck=stuck)
        if failure is not None:
            if failure.wants_logs:
                failure = replace(failure, logs=_crash_logs(apis, namespace, pod_name, t))
            raise RolloutFailed(failure, list(summaries))
    return None


def rollout_error(
    err: RolloutFailed, *, app: str, build: str, where: str, rolled_back_to: str | None
) -> DeployError:
    """A DeployError naming the cause, the pod, its events (and logs for crashes), and what still serves."""
    serving = (
        f"the previous version ({rolled_back_to}) keeps serving"
        if rolled_back_to
        else "no earlier version of this app was running"
    )
    if err.cancelled:
        return DeployError(
            what=f"app {app}: rollout of build {build} cancelled (wasmdev is stopping)", where=where
        )
    if err.failure is None and err.unreachable:
        what = f"app {app}: lost the API server while build {build} rolled out ({err.unreachable}); {serving}"
        return DeployError(
            what=what, where=where, fix="check the cluster is up (kubectl get nodes); the next build retries"
        )
    if err.failure is None:
        pods = "; ".join(err.pods) or "no pods were created"
        what = f"app {app}: build {build} was not Ready in time ({pods}); {serving}"
        return DeployError(
            what=what, where=where, fix="check the pods' events (kubectl describe pod) and logs"
        )
    f = err.failure
    lines = [f"app {app}: rollout of build {build} failed: pod {f.pod}: {f.reason}: {f.message}"]
    lines.append(f"  likely cause: {f.cause}")
    lines.append(f"  {serving}")
    if f.events:
        lines.append("  events:")
        lines.extend(f"    {e}" for e in f.events)
    if f.logs:
        lines.append("  logs:")
        lines.extend(f"    {line}" for line in f.logs)
    return DeployError(what="\n".join(lines), where=where, fix=f.fix)
