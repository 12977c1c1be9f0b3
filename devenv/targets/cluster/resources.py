"""The Kubernetes objects wasmdev makes for an app: pure functions from a ``Workload`` to dicts.

Every object carries ``app.kubernetes.io/managed-by: wasmdev`` and ``wasmdev.dev/app: NAME`` so
wasmdev lists, observes and cleans up only what it made; pod templates also carry
``wasmdev.dev/build`` (the build's short digest) so a rollout can tell the new pods from the old.

Routing: all apps share the cluster's one HTTP entry (k3d maps it to a host port, e.g. 8081) and
are told apart by host name, one Ingress per app with the rule ``host: NAME.localhost``. Host
rules, not path prefixes, because Spin routes on the full request path: a ``/NAME`` prefix would
reach the app as ``/NAME/hello`` and miss its routes unless every app were rewritten. ``*.localhost``
resolves to the loopback address (RFC 6761; browsers, curl and glibc's resolver do this), so
``http://NAME.localhost:8081/hello`` works with no /etc/hosts edits. Clusters behind a real domain
pass ``ingress_domain`` instead of ``localhost``.

The pod spec follows the Spin shim's own examples (``deployments/workloads/workload.yaml``):
``runtimeClassName``, ``command: ["/"]`` (runwasi runs an ELF/shebang arg0 as a Linux container;
``/`` forces the wasm path), port 80 (``SPIN_HTTP_LISTEN_ADDR`` defaults to ``0.0.0.0:80``), and
requests of 100m CPU / 128Mi unless wasmdev.toml says otherwise. Readiness uses Spin's built-in
``/.well-known/spin/health`` route, as SpinKube's spin-operator does, so "Ready" means the HTTP
listener is up, not just that the shim started.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "wasmdev"
APP_LABEL = "wasmdev.dev/app"
BUILD_LABEL = "wasmdev.dev/build"
FIELD_MANAGER = "wasmdev"

DEFAULT_RUNTIME_CLASS = "wasmtime-spin-v2"  # SpinKube's name; handler "spin"
DEFAULT_RUNTIME_HANDLER = "spin"
CONTAINER_NAME = "spin"
HTTP_PORT = 80
HEALTH_PATH = "/.well-known/spin/health"
DEFAULT_CPU_REQUEST = "100m"
DEFAULT_MEMORY_REQUEST = "128Mi"

Manifest = dict[str, Any]

_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


def object_name(app: str) -> str:
    """The app's name as a DNS-1123 label (Deployment, Service and Ingress names, label values)."""
    name = _DNS_LABEL.sub("-", app.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)[:63].rstrip("-")
    if not name:
        raise ValueError(f"cannot make a Kubernetes object name from app name {app!r}")
    return name if name[0].isalpha() else f"app-{name}"[:63]


def app_labels(app: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, APP_LABEL: object_name(app)}


def managed_selector(app: str | None = None) -> str:
    """A label selector for everything wasmdev made (or, given ``app``, made for that app)."""
    selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    return f"{selector},{APP_LABEL}={object_name(app)}" if app else selector


def app_host(app: str, domain: str = "localhost") -> str:
    return f"{object_name(app)}.{domain}"


@dataclass(frozen=True)
class Workload:
    """One app as the cluster should run it."""

    app: str  # the name in spin.toml
    image: str  # as the node pulls it, e.g. "wasmdev-registry:5000/wasmdev/hello:3f2a…"
    build: str  # the build's short digest (label on the pod template)
    runtime_class: str = DEFAULT_RUNTIME_CLASS
    replicas: int = 1
    cpu_request: str | None = DEFAULT_CPU_REQUEST
    memory_request: str | None = DEFAULT_MEMORY_REQUEST
    cpu_limit: str | None = None
    memory_limit: str | None = None
    ingress_domain: str = "localhost"
    ingress_class: str | None = "traefik"  # k3s's bundled controller; None = the cluster default
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def name(self) -> str:
        return object_name(self.app)

    @property
    def host(self) -> str:
        return app_host(self.app, self.ingress_domain)


def _metadata(w: Workload, namespace: str, extra_labels: Mapping[str, str] | None = None) -> Manifest:
    return {"name": w.name, "namespace": namespace, "labels": {**app_labels(w.app), **(extra_labels or {})}}


def _resources(w: Workload) -> Manifest:
    requests = {k: v for k, v in (("cpu", w.cpu_request), ("memory", w.memory_request)) if v}
    limits = {k: v for k, v in (("cpu", w.cpu_limit), ("memory", w.memory_limit)) if v}
    out: Manifest = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def deployment(w: Workload, namespace: str) -> Manifest:
    pod_labels = {**app_labels(w.app), BUILD_LABEL: w.build}
    container: Manifest = {
        "name": CONTAINER_NAME,
        "image": w.image,
        "command": ["/"],
        # Tags are content-derived: a tag never names two different images, so no re-pull.
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": HEALTH_PATH, "port": HTTP_PORT},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
        "resources": _resources(w),
    }
    if w.env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(w.env.items())]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(w, namespace),
        "spec": {
            "replicas": w.replicas,
            "revisionHistoryLimit": 2,  # old ReplicaSets are not needed to go back; keep the list short
            "selector": {"matchLabels": app_labels(w.app)},
            # maxUnavailable 0: the old pods keep serving until the new ones are Ready.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"runtimeClassName": w.runtime_class, "containers": [container]},
            },
        },
    }


def service(w: Workload, namespace: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(w, namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": app_labels(w.app),
            "ports": [{"name": "http", "port": 80, "targetPort": HTTP_PORT, "protocol": "TCP"}],
        },
    }


def ingress(w: Workload, namespace: str) -> Manifest:
    spec: Manifest = {
        "rules": [
            {
                "host": w.host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": w.name, "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ]
    }
    if w.ingress_class:
        spec["ingressClassName"] = w.ingress_class
    meta = _metadata(w, namespace)
    meta["annotations"] = {"ingress.kubernetes.io/ssl-redirect": "false"}  # the dev port is plain http
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def workload_manifests(w: Workload, namespace: str) -> list[Manifest]:
    """Service and Ingress first: they are cheap and let traffic find the pods as soon as they are Ready."""
    return [service(w, namespace), ingress(w, namespace), deployment(w, namespace)]


def runtime_class(name: str = DEFAULT_RUNTIME_CLASS, handler: str = DEFAULT_RUNTIME_HANDLER) -> Manifest:
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "handler": handler,
    }


def app_url(w: Workload, http_base_url: str) -> str:
    """``http://localhost:8081`` + app → ``http://NAME.localhost:8081/`` (the Ingress host rule)."""
    scheme, _, rest = http_base_url.partition("://")
    port = rest.rstrip("/").rpartition(":")[2] if ":" in rest else ""
    return f"{scheme}://{w.host}{':' + port if port else ''}/"
