"""A fake Kubernetes API server: real HTTP on 127.0.0.1 for the real ``kubernetes`` client.

It serves the subset wasmdev (and kubectl-style clients) use: discovery, core/v1 pods (list, get,
watch streams, log follow), services, events, namespaces, nodes; apps/v1 deployments (create, get,
replace, merge and server-side apply patches, delete, list by labelSelector); networking.k8s.io/v1
ingresses; node.k8s.io/v1 runtimeclasses; metrics.k8s.io/v1beta1 pod metrics (missing,
unavailable, empty or values). Pods are driven by ``FakeCluster`` (see kube_cluster.py).

``stop()`` closes the listener and every open connection (watches and log streams end as they do
when a real API server restarts); ``start()`` listens again on the same port with the same state.

Use the ``fake_apiserver`` fixture (import it into a test module) or ``FakeApiServer`` directly;
``write_kubeconfig`` points a kubeconfig file at it.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.fakes.kube_cluster import FakeCluster, Obj, PodFailure, PodScript, WatchGone, now_rfc3339_nano

__all__ = [
    "FakeApiServer",
    "FakeCluster",
    "PodFailure",
    "PodScript",
    "fake_apiserver",
    "fake_apiserver_fixture",
    "write_kubeconfig",
]

# resource -> (group/version, Kind, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "pods": ("v1", "Pod", True),
    "services": ("v1", "Service", True),
    "events": ("v1", "Event", True),
    "namespaces": ("v1", "Namespace", False),
    "nodes": ("v1", "Node", False),
    "deployments": ("apps/v1", "Deployment", True),
    "ingresses": ("networking.k8s.io/v1", "Ingress", True),
    "runtimeclasses": ("node.k8s.io/v1", "RuntimeClass", False),
}
GROUP_NAME = {"apps/v1": "deployments.apps", "networking.k8s.io/v1": "ingresses.networking.k8s.io"}
VERSION = {
    "major": "1",
    "minor": "35",
    "gitVersion": "v1.35.2+k3s1",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2026-03-01T00:00:00Z",
    "goVersion": "go1.25.7",
    "compiler": "gc",
    "platform": "linux/amd64",
}
RETURNS_OBJECT_ON_DELETE = {"pods", "services"}  # the others answer a Status, as the real server does


class _Http(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], fake: FakeApiServer) -> None:
        self.fake = fake
        super().__init__(addr, _Handler)


class FakeApiServer:
    def __init__(self, *, token: str | None = None, tick_seconds: float = 0.02) -> None:
        self.token = token
        self.cluster = FakeCluster(tick_seconds=tick_seconds)
        self.requests: list[tuple[str, str, str]] = []  # (method, path?query, content-type)
        self.port = 0
        self._http: _Http | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._alive = False

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self._alive

    def start(self) -> FakeApiServer:
        self._http = _Http(("127.0.0.1", self.port), self)
        self.port = self._http.server_address[1]
        self._alive = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """The API server goes away: no listener, and every open watch / log stream is cut."""
        self._alive = False
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        with self._conns_lock:
            for conn in list(self._conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop()
        self.cluster.close()

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    # --- helpers for tests ----------------------------------------------------------------------

    def api_client(self) -> Any:
        """A kubernetes ApiClient pointed at this server (bearer token when one is set)."""
        import kubernetes

        cfg = kubernetes.client.Configuration()
        cfg.host = self.url
        if self.token:
            cfg.api_key = {"authorization": self.token}
            cfg.api_key_prefix = {"authorization": "Bearer"}
        return kubernetes.client.ApiClient(cfg)

    def write_kubeconfig(self, path: Path, context: str = "fake", namespace: str = "default") -> Path:
        return write_kubeconfig(path, self.url, context=context, token=self.token, namespace=namespace)

    def requests_matching(self, method: str, fragment: str) -> list[tuple[str, str, str]]:
        return [r for r in list(self.requests) if r[0] == method and fragment in r[1]]


def write_kubeconfig(
    path: Path, server: str, *, context: str = "fake", token: str | None = None, namespace: str = "default"
) -> Path:
    """A kubeconfig with one cluster, user and context (current) pointing at ``server``."""
    user: dict[str, Any] = {"token": token} if token else {}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server}}],
        "users": [{"name": context, "user": user}],
        "contexts": [
            {"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}
        ],
        "current-context": context,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(name="fake_apiserver")
def fake_apiserver_fixture() -> Iterator[FakeApiServer]:
    """A started server, closed after the test. Import ``fake_apiserver_fixture`` into a test module
    (the fixture is named ``fake_apiserver``, so test parameters do not shadow the import)."""
    server = FakeApiServer(tick_seconds=0.02).start()
    try:
        yield server
    finally:
        server.close()


fake_apiserver = fake_apiserver_fixture  # the same fixture, for modules that import it by this name


# --- request handling ---------------------------------------------------------------------------


def _status(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
        "details": details or {},
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Http
    # HTTP/1.1 like the real server: keep-alive for plain responses, chunked encoding for watches
    # and log follows (urllib3, and so the kubernetes client, yields a chunked body chunk by chunk;
    # a body delimited only by the connection closing would be read to its end first).
    protocol_version = "HTTP/1.1"
    # Small responses on a kept-alive connection otherwise wait ~40 ms for delayed ACKs (Nagle).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake.track(self.connection, True)

    def finish(self) -> None:
        self.server.fake.track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    # --- plumbing -----------------------------------------------------------------------------

    def _send(self, code: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True  # one stream per connection, closed when it ends

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _body(self) -> Obj:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        if "yaml" in ctype:
            return yaml.safe_load(raw) or {}
        return json.loads(raw or b"{}")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        fake.requests.append((method, self.path, self.headers.get("Content-Type", "")))
        if fake.token and self.headers.get("Authorization") != f"Bearer {fake.token}":
            return self._send(401, _status(401, "Unauthorized", "Unauthorized"))
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            self._route(method, [s for s in url.path.split("/") if s], query)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client (or stop()) went away mid-stream

    def _route(self, method: str, segs: list[str], q: dict[str, str]) -> None:
        fake = self.server.fake
        if segs == ["version"]:
            return self._send(200, VERSION)
        if segs == ["api"]:
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
        if segs == ["apis"]:
            groups = ["apps/v1", "networking.k8s.io/v1", "node.k8s.io/v1"]
            if fake.cluster.metrics_mode != "missing":
                groups.append("metrics.k8s.io/v1beta1")
            return self._send(
                200,
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [
                        {
                            "name": g.split("/")[0],
                            "versions": [{"groupVersion": g, "version": g.split("/")[1]}],
                            "preferredVersion": {"groupVersion": g, "version": g.split("/")[1]},
                        }
                        for g in groups
                    ],
                },
            )
        if len(segs) >= 2 and segs[0] == "api":
            gv, rest = segs[1], segs[2:]
        elif len(segs) >= 3 and segs[0] == "apis":
            gv, rest = f"{segs[1]}/{segs[2]}", segs[3:]
        else:
            return self._send(
                404, _status(404, "NotFound", "the server could not find the requested resource")
            )
        if gv == "metrics.k8s.io/v1beta1":
            return self._metrics(rest)
        namespace: str | None
        if rest and rest[0] == "namespaces" and len(rest) >= 3:
            namespace, resource, tail = rest[1], rest[2], rest[3:]
        elif rest:
            resource, tail = rest[0], rest[1:]
            namespace = "" if resource in RESOURCES and not RESOURCES[resource][2] else None
        else:
            return self._send(
                200,
                {
                    "kind": "APIResourceList",
                    "groupVersion": gv,
                    "resources": [
                        {"name": r, "namespaced": ns, "kind": k}
                        for r, (g, k, ns) in RESOURCES.items()
                        if g == gv
                    ],
                },
            )
        if resource not in RESOURCES or RESOURCES[resource][0] != gv:
            return self._send(
                404, _status(404, "NotFound", "the server could not find the requested resource")
            )
        name = tail[0] if tail else None
        sub = tail[1] if len(tail) > 1 else None
        if sub == "log" and resource == "pods" and method == "GET" and name:
            return self._pod_log(namespace or "default", name, q)
        if name is None:
            if method == "GET":
                return self._list(resource, namespace, q)
            if method == "POST":
                return self._create(resource, namespace or "", self._body(), q)
        elif method == "GET":
            return self._get(resource, namespace or "", name)
        elif method == "PUT":
            return self._replace(resource, namespace or "", name, self._body())
        elif method == "PATCH":
            return self._patch(resource, namespace or "", name, q)
        elif method == "DELETE":
            return self._delete(resource, namespace or "", name)
        self._send(405, _status(405, "MethodNotAllowed", f"{method} is not supported on {'/'.join(segs)}"))

    # --- resources ------------------------------------------------------------------------------

    def _not_found(self, resource: str, name: str) -> None:
        qualified = GROUP_NAME.get(RESOURCES[resource][0], resource)
        self._send(
            404, _status(404, "NotFound", f'{qualified} "{name}" not found', {"name": name, "kind": resource})
        )

    def _typed(self, resource: str, obj: Obj) -> Obj:
        gv, kind, _ = RESOURCES[resource]
        obj.setdefault("apiVersion", gv)
        obj.setdefault("kind", kind)
        return obj

    def _list(self, resource: str, namespace: str | None, q: dict[str, str]) -> None:
        cluster = self.server.fake.cluster
        labels, fields = q.get("labelSelector", ""), q.get("fieldSelector", "")
        if q.get("watch") in ("true", "1"):
            return self._watch(resource, namespace, q)
        with cluster.lock:
            items = cluster.list(resource, namespace or None, labels, fields)
            rv = str(cluster.resource_version)
        gv, kind, _ = RESOURCES[resource]
        self._send(
            200,
            {
                "kind": f"{kind}List",
                "apiVersion": gv,
                "metadata": {"resourceVersion": rv},
                "items": [self._typed(resource, i) for i in items],
            },
        )

    def _watch(self, resource: str, namespace: str | None, q: dict[str, str]) -> None:
        fake = self.server.fake
        cluster = fake.cluster
        from tests.fakes.kube_cluster import parse_field_selector, parse_label_selector

        # A watch filters by both selectors, as the list it continues did.
        labels, fields = q.get("labelSelector", ""), q.get("fieldSelector", "")
        match_labels, match_fields = parse_label_selector(labels), parse_field_selector(fields)
        deadline = time.time() + float(q.get("timeoutSeconds") or 1800)
        rv_param = q.get("resourceVersion") or "0"
        gone: WatchGone | None = None
        with cluster.lock:
            if rv_param == "0":
                initial = cluster.list(resource, namespace or None, labels, fields)
                rv = cluster.resource_version
            else:
                initial, rv = [], int(rv_param)
                try:
                    cluster.events_since(resource, rv)
                except WatchGone as err:
                    gone = err
        # Like the real watch cache, a too-old resourceVersion is not an HTTP 410: the watch
        # starts (200) and its one event is an ERROR carrying the 410 Expired Status.
        self._start_stream("application/json")

        def emit(kind: str, obj: Obj) -> None:
            body = obj if kind == "ERROR" else self._typed(resource, obj)
            self._chunk(json.dumps({"type": kind, "object": body}).encode() + b"\n")

        try:
            if gone is not None:
                raise gone
            for obj in initial:
                emit("ADDED", obj)
            for kind, obj in cluster.watch(resource, namespace or None, rv, deadline, lambda: fake.alive):
                if match_labels(obj["metadata"].get("labels") or {}) and match_fields(obj):
                    emit(kind, obj)
        except WatchGone as err:
            emit("ERROR", _status(410, "Expired", str(err)))
        if fake.alive:
            self._end_stream()  # timed out or expired: a clean end; the client watches again

    def _get(self, resource: str, namespace: str, name: str) -> None:
        obj = self.server.fake.cluster.get(resource, namespace, name)
        if obj is None:
            return self._not_found(resource, name)
        self._send(200, self._typed(resource, obj))

    def _create(self, resource: str, namespace: str, body: Obj, q: dict[str, str]) -> None:
        cluster = self.server.fake.cluster
        name = body.get("metadata", {}).get("name", "")
        with cluster.lock:
            if cluster.get(resource, namespace, name) is not None:
                qualified = GROUP_NAME.get(RESOURCES[resource][0], resource)
                return self._send(409, _status(409, "AlreadyExists", f'{qualified} "{name}" already exists'))
            body.pop("status", None)
            created = cluster.put(resource, namespace, body)
        self._send(201, self._typed(resource, created))

    def _replace(self, resource: str, namespace: str, name: str, body: Obj) -> None:
        cluster = self.server.fake.cluster
        with cluster.lock:
            if cluster.get(resource, namespace, name) is None:
                return self._not_found(resource, name)
            body.pop("status", None)
            updated = cluster.put(resource, namespace, body)
        self._send(200, self._typed(resource, updated))

    def _patch(self, resource: str, namespace: str, name: str, q: dict[str, str]) -> None:
        cluster = self.server.fake.cluster
        ctype = self.headers.get("Content-Type", "")
        body = self._body()
        with cluster.lock:
            current = cluster.get(resource, namespace, name)
            if "apply-patch" in ctype:
                manager = q.get("fieldManager")
                if not manager:
                    return self._send(
                        422,
                        _status(
                            422,
                            "Invalid",
                            'PatchOptions.meta.k8s.io "" is invalid: '
                            "fieldManager: Required value: is required for apply patch",
                        ),
                    )
                # One applier owns every field it sends: the applied config replaces its fields.
                applied = copy.deepcopy(body)
                applied.setdefault("metadata", {})["name"] = name
                applied["metadata"]["managedFields"] = [{"manager": manager, "operation": "Apply"}]
                applied.pop("status", None)
                updated = cluster.put(resource, namespace, applied)
                return self._send(201 if current is None else 200, self._typed(resource, updated))
            if current is None:
                return self._not_found(resource, name)
            merged = _merge(current, body)
            updated = cluster.put(resource, namespace, merged)
        self._send(200, self._typed(resource, updated))

    def _delete(self, resource: str, namespace: str, name: str) -> None:
        cluster = self.server.fake.cluster
        if resource == "pods":  # graceful: the pod is answered back Terminating, removed later
            gone = cluster.delete_pod(namespace, name)
        else:
            gone = cluster.delete(resource, namespace, name)
        if gone is None:
            return self._not_found(resource, name)
        if resource in RETURNS_OBJECT_ON_DELETE:
            return self._send(200, self._typed(resource, gone))
        status = _status(200, "", "", {"name": name, "kind": resource, "uid": gone["metadata"]["uid"]})
        self._send(200, status)

    # --- logs and metrics ---------------------------------------------------------------------

    def _pod_log(self, namespace: str, name: str, q: dict[str, str]) -> None:
        fake = self.server.fake
        cluster = fake.cluster
        pod = cluster.get("pods", namespace, name)
        if pod is None:
            return self._not_found("pods", name)
        container = q.get("container") or pod["spec"]["containers"][0]["name"]
        statuses = pod.get("status", {}).get("containerStatuses") or []
        state = next((s.get("state", {}) for s in statuses if s["name"] == container), {})
        if "waiting" in state and not any(s.get("restartCount") for s in statuses):
            reason = state["waiting"].get("reason", "ContainerCreating")
            msg = f'container "{container}" in pod "{name}" is waiting to start: {reason}'
            return self._send(400, _status(400, "BadRequest", msg))
        if not statuses:
            msg = f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
            return self._send(400, _status(400, "BadRequest", msg))
        if q.get("previous") == "true":
            # The kubelet has a previous container's log only after a restart.
            last = next((s.get("lastState") or {} for s in statuses if s["name"] == container), {})
            if "terminated" not in last:
                msg = f'previous terminated container "{container}" in pod "{name}" not found'
                return self._send(400, _status(400, "BadRequest", msg))
        follow, stamps = q.get("follow") == "true", q.get("timestamps") == "true"
        self._start_stream("text/plain")
        sent = 0
        while True:
            with cluster.lock:
                lines = cluster.pod_logs(namespace, name)
                if lines is None or not fake.alive:
                    if fake.alive:
                        self._end_stream()  # the pod is gone: the stream ends cleanly
                    return
                fresh = lines[sent:]
                if not fresh and follow:
                    cluster.lock.wait(timeout=0.05)
                    continue
            body = "".join(
                f"{now_rfc3339_nano(ts)} {text}\n" if stamps else f"{text}\n" for ts, text in fresh
            )
            self._chunk(body.encode())
            sent += len(fresh)
            if not follow:
                return self._end_stream()

    def _metrics(self, rest: list[str]) -> None:
        cluster = self.server.fake.cluster
        mode = cluster.metrics_mode
        if mode == "missing":
            return self._send(
                404, _status(404, "NotFound", "the server could not find the requested resource")
            )
        if mode == "unavailable":
            return self._send(
                503,
                _status(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request (get pods.metrics.k8s.io)",
                ),
            )
        namespace = rest[1] if len(rest) >= 3 and rest[0] == "namespaces" else None
        q = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        items = []
        if mode == "values":
            for pod in cluster.list("pods", namespace, q.get("labelSelector", "")):
                if pod.get("status", {}).get("phase") != "Running":
                    continue
                cpu, mem = cluster.pod_usage.get(pod["metadata"]["name"], ("2500000n", "13Mi"))
                items.append(
                    {
                        "metadata": {
                            "name": pod["metadata"]["name"],
                            "namespace": pod["metadata"]["namespace"],
                            "labels": pod["metadata"].get("labels", {}),
                        },
                        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "window": "15s",
                        "containers": [
                            {"name": c["name"], "usage": {"cpu": cpu, "memory": mem}}
                            for c in pod["spec"]["containers"]
                        ],
                    }
                )
        self._send(
            200,
            {
                "kind": "PodMetricsList",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {},
                "items": items,
            },
        )


def _merge(base: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386); good enough for strategic merge on the fields wasmdev patches."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out
