"""The state behind the fake Kubernetes API server: objects, resource versions, watch events, and a
tiny Deployment controller + kubelet that moves pods through scripted lifecycles.

Modelled on what the real control plane shows a client (Tilt's fake_client.go is the idea: a fake
that drives the real code paths), not on how it works inside: one template hash per Deployment
revision, new pods created beside the old ones, old pods deleted only once the new ones are Ready
(maxUnavailable 0), and pod status / events shaped like the kubelet's for the failures wasmdev
must explain (image pull over https to a plain-http registry, crash loops, no runtime handler,
unschedulable pods).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

Obj = dict[str, Any]


def now_rfc3339(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339_nano(ts: float | None = None) -> str:
    t = ts if ts is not None else time.time()
    base = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{int((t % 1) * 1e9):09d}Z"


class PodFailure(StrEnum):
    NONE = "none"
    IMAGE_PULL = "image_pull"  # ErrImagePull, then ImagePullBackOff
    CRASH_LOOP = "crash_loop"  # starts, exits 137, CrashLoopBackOff with growing restarts
    NO_RUNTIME = "no_runtime"  # sandbox creation fails: no runtime for "spin" is configured
    UNSCHEDULABLE = "unschedulable"  # a nodeSelector no node matches


@dataclass
class PodScript:
    """How pods running a given image behave. Times are controller ticks."""

    failure: PodFailure = PodFailure.NONE
    ticks_to_schedule: int = 1
    ticks_to_running: int = 2
    ticks_to_ready: int = 3
    logs: tuple[str, ...] = ("Serving http://0.0.0.0:80", "Available Routes:")


@dataclass
class _PodRuntime:
    script: PodScript
    image: str
    age: int = 0
    restarts: int = 0
    logs: list[tuple[float, str]] = field(default_factory=list)
    logs_emitted: bool = False
    handler: str = "runc"  # the RuntimeClass handler the pod asked containerd for


def template_hash(template: Obj) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def parse_label_selector(selector: str | None) -> Callable[[dict[str, str]], bool]:
    """Equality, inequality and existence requirements: what kubectl and wasmdev send."""
    if not selector:
        return lambda labels: True
    reqs: list[tuple[str, str, str | None]] = []  # (op, key, value)
    for part in (p.strip() for p in selector.split(",")):
        if "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append(("!=", k.strip(), v.strip()))
        elif "=" in part:
            k, v = part.replace("==", "=").split("=", 1)
            reqs.append(("=", k.strip(), v.strip()))
        elif part.startswith("!"):
            reqs.append(("!", part[1:], None))
        elif part:
            reqs.append(("exists", part, None))

    def holds(op: str, key: str, value: str | None, labels: dict[str, str]) -> bool:
        if op == "=":
            return labels.get(key) == value
        if op == "!=":
            return labels.get(key) != value
        return (key in labels) == (op == "exists")

    return lambda labels: all(holds(op, k, v, labels) for op, k, v in reqs)


def parse_field_selector(selector: str | None) -> Callable[[Obj], bool]:
    """``a.b.c=value`` pairs over the object's fields (events use involvedObject.name)."""
    if not selector:
        return lambda obj: True
    pairs = [p.split("=", 1) for p in selector.replace("==", "=").split(",") if "=" in p]

    def lookup(obj: Obj, dotted: str) -> Any:
        cur: Any = obj
        for key in dotted.split("."):
            if not isinstance(cur, dict):
                return None
            cur = cur.get(key)
        return cur

    return lambda obj: all(str(lookup(obj, k.strip())) == v.strip() for k, v in pairs)


class WatchGone(Exception):
    """The requested resourceVersion is older than the retained event window (HTTP 410; a watch answers it with an ERROR event)."""


class FakeCluster:
    """Objects by resource ("pods", "deployments", …) and (namespace, name), plus watch events."""

    EVENT_WINDOW = 2000  # retained watch events per resource, like etcd's compaction window

    def __init__(self, tick_seconds: float = 0.02) -> None:
        self.tick_seconds = tick_seconds
        self.lock = threading.Condition(threading.RLock())
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self.events: dict[str, list[tuple[int, str, Obj]]] = {}
        self.resource_version = 100
        self.scripts: list[tuple[str, PodScript]] = []
        self.default_script = PodScript()
        self.pod_runtime: dict[tuple[str, str], _PodRuntime] = {}
        # The runtimes the node's containerd has: runc, and the one k3s registers on finding
        # containerd-shim-spin-v2 (the v0.24 node image carries no other shim). A pod whose
        # RuntimeClass names another handler fails its sandbox, whatever its script says.
        self.runtime_handlers: set[str] = {"runc", "spin"}
        self.metrics_mode = "values"  # "missing" (404), "unavailable" (503), "empty", "values"
        self.pod_usage: dict[str, tuple[str, str]] = {}  # pod name -> (cpu, memory) quantities
        self.closed = False
        # Deleted pods stay as Terminating (deletionTimestamp set, not Ready) for this many ticks
        # before they are gone, as the kubelet's graceful shutdown keeps them; 0 removes at once.
        self.termination_ticks = 2
        self._terminating: dict[tuple[str, str], int] = {}
        self._name_seq = 0
        self._thread = threading.Thread(target=self._run, name="fake-kube-controller", daemon=True)
        for ns in ("default", "kube-system", "kube-public"):
            self.put("namespaces", "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        self.put(
            "nodes",
            "",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "k3d-wasmdev-server-0", "labels": {"kubernetes.io/os": "linux"}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            },
        )
        self.set_runtime_handlers(*self.runtime_handlers)
        self._thread.start()

    def set_runtime_handlers(self, *names: str) -> None:
        """The runtimes the node's containerd has; the node reports them as the kubelet does
        (``status.runtimeHandlers``, Kubernetes ≥ 1.30 with containerd 2, as in k3s 1.35)."""
        with self.lock:
            self.runtime_handlers = set(names)
            features = {"recursiveReadOnlyMounts": True, "userNamespaces": True}
            reported = [{"name": "", "features": features}]  # the default handler has no name
            reported += [{"name": n, "features": features} for n in sorted(self.runtime_handlers)]
            for node in self.list("nodes", None):
                node["status"]["runtimeHandlers"] = reported
                self.put("nodes", "", node)

    # --- scripting ----------------------------------------------------------------------------

    def script_image(self, match: str, script: PodScript) -> None:
        """Pods whose image contains ``match`` follow ``script`` (the latest matching rule wins)."""
        with self.lock:
            self.scripts.append((match, script))

    def script_for(self, image: str) -> PodScript:
        for match, script in reversed(self.scripts):
            if match in image:
                return script
        return self.default_script

    def append_log(self, pod: str, line: str, namespace: str = "default") -> None:
        with self.lock:
            self.pod_runtime[(namespace, pod)].logs.append((time.time(), line))
            self.lock.notify_all()

    def pod_logs(self, namespace: str, pod: str) -> list[tuple[float, str]] | None:
        rt = self.pod_runtime.get((namespace, pod))
        return None if rt is None else list(rt.logs)

    def pods(self, namespace: str = "default", selector: str = "") -> list[Obj]:
        return self.list("pods", namespace, selector)

    # --- storage ------------------------------------------------------------------------------

    def _bump(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)

    def _record(self, resource: str, kind: str, obj: Obj) -> None:
        log = self.events.setdefault(resource, [])
        log.append((self.resource_version, kind, copy.deepcopy(obj)))
        del log[: max(0, len(log) - self.EVENT_WINDOW)]
        self.lock.notify_all()

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            obj = self.objects.get(resource, {}).get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: str, namespace: str | None, labels: str = "", fields: str = "") -> list[Obj]:
        match_labels, match_fields = parse_label_selector(labels), parse_field_selector(fields)
        with self.lock:
            return [
                copy.deepcopy(o)
                for (ns, _), o in sorted(self.objects.get(resource, {}).items())
                if (namespace is None or ns == namespace)
                and match_labels(o["metadata"].get("labels") or {})
                and match_fields(o)
            ]

    def put(self, resource: str, namespace: str, obj: Obj) -> Obj:
        """Create or replace; bumps resourceVersion (and generation when the spec changed)."""
        with self.lock:
            meta = obj.setdefault("metadata", {})
            if namespace:
                meta["namespace"] = namespace
            key = (namespace, meta["name"])
            table = self.objects.setdefault(resource, {})
            old = table.get(key)
            if old is None:
                meta.setdefault("uid", hashlib.sha1(f"{resource}/{key}/{time.time()}".encode()).hexdigest())
                meta.setdefault("creationTimestamp", now_rfc3339())
                meta["generation"] = 1
            else:
                meta["uid"] = old["metadata"]["uid"]
                meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
                changed = old.get("spec") != obj.get("spec")
                meta["generation"] = old["metadata"].get("generation", 1) + (1 if changed else 0)
                if "status" not in obj and "status" in old:
                    obj["status"] = old["status"]
            meta["resourceVersion"] = self._bump()
            table[key] = obj
            self._record(resource, "ADDED" if old is None else "MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete(self, resource: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            obj = self.objects.get(resource, {}).pop((namespace, name), None)
            if obj is None:
                return None
            obj["metadata"]["resourceVersion"] = self._bump()
            self._record(resource, "DELETED", obj)
            if resource == "pods":
                self.pod_runtime.pop((namespace, name), None)
                self._terminating.pop((namespace, name), None)
            if resource == "deployments":
                for pod in self.list("pods", namespace):
                    if pod["metadata"].get("annotations", {}).get("fake/deployment") == name:
                        self.delete_pod(namespace, pod["metadata"]["name"])  # the garbage collector's
            return obj

    def delete_pod(self, namespace: str, name: str) -> Obj | None:
        """Delete a pod the way the API server does: mark it Terminating now, remove it later."""
        with self.lock:
            pod = self.objects.get("pods", {}).get((namespace, name))
            if pod is None:
                return None
            if self.termination_ticks <= 0:
                return self.delete("pods", namespace, name)
            meta = pod["metadata"]
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now_rfc3339()
                meta["deletionGracePeriodSeconds"] = 30
                for cond in (pod.get("status") or {}).get("conditions") or []:
                    if cond.get("type") == "Ready":
                        cond["status"] = "False"
                meta["resourceVersion"] = self._bump()
                self._record("pods", "MODIFIED", pod)
                self._terminating[(namespace, name)] = self.termination_ticks
            return copy.deepcopy(pod)

    def events_since(self, resource: str, rv: int) -> list[tuple[int, str, Obj]]:
        log = self.events.get(resource, [])
        if log and rv < log[0][0] - 1 and rv < self.resource_version - self.EVENT_WINDOW:
            raise WatchGone(f"too old resource version: {rv} ({log[0][0]})")
        return [e for e in log if e[0] > rv]

    def watch(
        self, resource: str, namespace: str | None, rv: int, deadline: float, alive: Callable[[], bool]
    ) -> Iterator[tuple[str, Obj]]:
        """Yield (type, obj) for events after ``rv`` until ``deadline`` or ``alive()`` turns false."""
        while alive() and time.time() < deadline:
            with self.lock:
                batch = self.events_since(resource, rv)
                if not batch:
                    self.lock.wait(timeout=0.05)
                    continue
            for event_rv, kind, obj in batch:
                rv = event_rv
                if namespace is None or obj["metadata"].get("namespace") == namespace:
                    yield kind, obj

    # --- controller + kubelet -----------------------------------------------------------------

    def close(self) -> None:
        self.closed = True

    def _run(self) -> None:
        while not self.closed:
            time.sleep(self.tick_seconds)
            with self.lock:
                for (ns, _), deploy in list(self.objects.get("deployments", {}).items()):
                    self._reconcile_deployment(ns, deploy)
                for key, left in list(self._terminating.items()):
                    if left <= 1:
                        self.delete("pods", *key)
                    else:
                        self._terminating[key] = left - 1
                for (ns, name), rt in list(self.pod_runtime.items()):
                    if (ns, name) not in self._terminating:  # a terminating pod's status is frozen
                        self._step_pod(ns, name, rt)

    def _reconcile_deployment(self, ns: str, deploy: Obj) -> None:
        name = deploy["metadata"]["name"]
        template = deploy["spec"]["template"]
        want = int(deploy["spec"].get("replicas", 1))
        revision = template_hash(template)
        owned = [
            p
            for p in self.list("pods", ns)
            if p["metadata"].get("annotations", {}).get("fake/deployment") == name
            and not p["metadata"].get("deletionTimestamp")  # Terminating pods no longer count
        ]
        current = [p for p in owned if p["metadata"]["labels"].get("pod-template-hash") == revision]
        old = [p for p in owned if p not in current]
        runtime_class = template["spec"].get("runtimeClassName")
        rejected = ""
        if runtime_class and self.get("runtimeclasses", "", runtime_class) is None:
            # The RuntimeClass admission plugin refuses the pod; the ReplicaSet reports FailedCreate.
            rejected = f'pods "{name}-{revision}-" is forbidden: pod rejected: RuntimeClass "{runtime_class}" not found'
        for _ in range(want - len(current)) if not rejected else ():
            current.append(self._create_pod(ns, name, revision, template))
        ready_current = [p for p in current if _pod_ready(p)]
        if len(ready_current) >= want:
            for p in old:  # only once the new revision serves: maxUnavailable 0
                self.delete_pod(ns, p["metadata"]["name"])
            old = []
        for p in current[want:]:
            self.delete_pod(ns, p["metadata"]["name"])
        all_pods = current[:want] + old
        status = {
            "observedGeneration": deploy["metadata"].get("generation", 1),
            "replicas": len(all_pods),
            "updatedReplicas": len(current[:want]),
            "readyReplicas": sum(1 for p in all_pods if _pod_ready(p)),
            "availableReplicas": sum(1 for p in all_pods if _pod_ready(p)),
        }
        status["unavailableReplicas"] = max(0, want - status["availableReplicas"])
        if rejected:
            status["conditions"] = [
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": rejected}
            ]
        if deploy.get("status") != status:
            deploy["status"] = status
            deploy["metadata"]["resourceVersion"] = self._bump()
            self._record("deployments", "MODIFIED", deploy)

    def _create_pod(self, ns: str, deploy: str, revision: str, template: Obj) -> Obj:
        self._name_seq += 1
        name = f"{deploy}-{revision}-{self._name_seq:05x}"
        meta = copy.deepcopy(template.get("metadata", {}))
        meta["name"] = name
        meta.setdefault("labels", {})["pod-template-hash"] = revision
        meta.setdefault("annotations", {})["fake/deployment"] = deploy
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": f"{deploy}-{revision}",
                "uid": hashlib.sha1(f"{ns}/{deploy}/{revision}".encode()).hexdigest(),
                "controller": True,
            }
        ]
        spec = copy.deepcopy(template["spec"])
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": spec,
            "status": {"phase": "Pending"},
        }
        image = spec["containers"][0]["image"]
        runtime_class = spec.get("runtimeClassName")
        handler = "runc"
        if runtime_class:  # the kubelet resolves the class to its handler, as here
            handler = (self.get("runtimeclasses", "", runtime_class) or {}).get("handler", runtime_class)
        script = self.script_for(image)
        if handler not in self.runtime_handlers:
            script = dataclasses.replace(script, failure=PodFailure.NO_RUNTIME)
        self.pod_runtime[(ns, name)] = _PodRuntime(script=script, image=image, handler=handler)
        return self.put("pods", ns, pod)

    def _event(self, ns: str, pod: str, kind: str, reason: str, message: str) -> None:
        # The kubelet's recorder aggregates repeats of the same reason *and* message into one event.
        name = f"{pod}.{hashlib.sha1(f'{reason}/{message}'.encode()).hexdigest()[:12]}"
        existing = self.get("events", ns, name)
        count = (existing or {}).get("count", 0) + 1
        self.put(
            "events",
            ns,
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name},
                "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns},
                "reason": reason,
                "message": message,
                "type": kind,
                "count": count,
                "firstTimestamp": (existing or {}).get("firstTimestamp", now_rfc3339()),
                "lastTimestamp": now_rfc3339(),
            },
        )

    def _step_pod(self, ns: str, name: str, rt: _PodRuntime) -> None:
        pod = self.objects.get("pods", {}).get((ns, name))
        if pod is None:
            return
        rt.age += 1
        s = rt.script
        before = json.dumps(pod.get("status"), sort_keys=True)
        status = _pod_status(pod, rt, ns, name, self._event)
        if rt.age == s.ticks_to_running and s.failure in (PodFailure.NONE, PodFailure.CRASH_LOOP):
            if not rt.logs_emitted:
                rt.logs.extend((time.time(), line) for line in s.logs)
                rt.logs_emitted = True
                self.lock.notify_all()
        if json.dumps(status, sort_keys=True) != before:
            pod["status"] = status
            pod["metadata"]["resourceVersion"] = self._bump()
            self._record("pods", "MODIFIED", pod)


def _pod_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def _pod_status(pod: Obj, rt: _PodRuntime, ns: str, name: str, event: Callable[..., None]) -> Obj:
    """The status the kubelet would report at this age, emitting the events it would emit."""
    s, age, image = rt.script, rt.age, rt.image
    container = pod["spec"]["containers"][0]["name"]
    started = pod["metadata"]["creationTimestamp"]
    if s.failure is PodFailure.UNSCHEDULABLE:
        if age == s.ticks_to_schedule:
            event(
                ns,
                name,
                "Warning",
                "FailedScheduling",
                "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
                "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
            )
        return {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
        }
    if age < s.ticks_to_schedule:
        return {"phase": "Pending"}
    base_conditions = [{"type": "PodScheduled", "status": "True"}]

    def waiting(reason: str, message: str = "", restarts: int = 0, last: Obj | None = None) -> Obj:
        cs: Obj = {
            "name": container,
            "image": image,
            "imageID": "",
            "ready": False,
            "restartCount": restarts,
            "started": False,
            "state": {"waiting": {"reason": reason, **({"message": message} if message else {})}},
        }
        if last:
            cs["lastState"] = last
        return cs

    if s.failure is PodFailure.NO_RUNTIME:
        if age == s.ticks_to_schedule:
            event(
                ns,
                name,
                "Warning",
                "FailedCreatePodSandBox",
                "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: "
                f'no runtime for "{rt.handler}" is configured',
            )
        return {
            "phase": "Pending",
            "conditions": base_conditions,
            "containerStatuses": [waiting("ContainerCreating")],
            "startTime": started,
        }
    if s.failure is PodFailure.IMAGE_PULL:
        host = image.split("/", 1)[0]
        pull_error = (
            f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
            f'failed to do request: Head "https://{host}/v2/{image.split("/", 1)[-1].split(":")[0]}/manifests/'
            f'{image.rsplit(":", 1)[-1]}": http: server gave HTTP response to HTTPS client'
        )
        if age == s.ticks_to_schedule:
            event(ns, name, "Normal", "Pulling", f'Pulling image "{image}"')
            event(ns, name, "Warning", "Failed", f'Failed to pull image "{image}": {pull_error}')
            event(ns, name, "Warning", "Failed", "Error: ErrImagePull")
            return {
                "phase": "Pending",
                "conditions": base_conditions,
                "containerStatuses": [waiting("ErrImagePull", pull_error)],
                "startTime": started,
            }
        if age == s.ticks_to_schedule + 1:
            event(ns, name, "Normal", "BackOff", f'Back-off pulling image "{image}"')
        return {
            "phase": "Pending",
            "conditions": base_conditions,
            "containerStatuses": [waiting("ImagePullBackOff", f'Back-off pulling image "{image}"')],
            "startTime": started,
        }
    if age < s.ticks_to_running:
        return {
            "phase": "Pending",
            "conditions": base_conditions,
            "containerStatuses": [waiting("ContainerCreating")],
            "startTime": started,
        }
    if s.failure is PodFailure.CRASH_LOOP:
        # Each tick after start the container exits 137 and the kubelet backs off.
        rt.restarts = age - s.ticks_to_running
        if rt.restarts >= 1:
            event(
                ns,
                name,
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {container} in pod {name}",
            )
        last = {
            "terminated": {
                "exitCode": 137,
                "reason": "Error",
                "startedAt": started,
                "finishedAt": now_rfc3339(),
            }
        }
        return {
            "phase": "Running",
            "conditions": base_conditions
            + [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "containerStatuses": [
                waiting(
                    "CrashLoopBackOff",
                    f"back-off 10s restarting failed container={container} pod={name}_{ns}",
                    restarts=max(1, rt.restarts),
                    last=last,
                )
            ],
            "startTime": started,
        }
    ready = age >= s.ticks_to_ready
    return {
        "phase": "Running",
        "conditions": base_conditions + [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [
            {
                "name": container,
                "image": image,
                "imageID": f"{image}@sha256:{'0' * 64}",
                "ready": ready,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": started}},
            }
        ],
        "startTime": started,
    }
