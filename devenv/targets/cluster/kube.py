"""The kube target: deploy Spin apps to an existing cluster whose nodes carry the Spin shim.

``wasmdev up --target kube --context NAME --registry HOST/REPO`` uses it directly; the k3d target
bootstraps a cluster and then delegates every deploy to it (push to ``localhost:PORT``, pull from
``REGISTRY-NAME:5000`` inside the cluster). One deploy:

  package (OCI image, content-derived tag) → push to ``push_registry`` (only missing blobs)
  → server-side apply Service, Ingress, Deployment → wait for the new build's pods to be Ready
  → URLs (``http://APP.localhost:PORT/``, one Ingress host rule per app; see resources.py).

A failed rollout raises ``DeployError`` with the pod, the cause, its events (and logs for a crash),
and re-applies the previous Deployment so the broken pods go and the old ones keep serving.
Pods, logs and metrics flow into the store through ``ClusterObserver`` from the first deploy on.
Every kubernetes-client call runs in a worker thread; none blocks the event loop.

``close()`` stops observing but leaves the apps running (the cluster outlives the session and
``wasmdev cluster status`` lists them); ``remove(app)`` and ``delete_managed`` delete what wasmdev
made, found by its labels and nothing else.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes
from kubernetes.client.exceptions import ApiException

from devenv.errors import DeployError, TargetUnavailable, WasmdevError
from devenv.model import BuiltApp, LogLine, LogStream, StepState, StepStatus
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.base import DeployResult, UnsupportedApp
from devenv.targets.cluster.cleanup import delete_managed
from devenv.targets.cluster.ingress_check import loopback_target, wait_until_routed
from devenv.targets.cluster.observe import ClusterObserver, ObserveSettings
from devenv.targets.cluster.publish import Packager, PublishedImage, oci_packager, split_registry
from devenv.targets.cluster.resources import (
    DEFAULT_RUNTIME_CLASS,
    Manifest,
    Workload,
    app_url,
    deployment,
    workload_manifests,
)
from devenv.targets.cluster.rollout import (
    KubeApis,
    RolloutFailed,
    RolloutPolicy,
    api_error_text,
    apply,
    rollout_error,
    serving_deployment,
    wait_for_rollout,
)
from devenv.targets.cluster.runtimeclass import ensure_runtime_class

__all__ = [
    "KubeTarget",
    "Packager",
    "PublishedImage",
    "delete_managed",
    "kube_target_from_settings",
    "oci_packager",
    "split_registry",
]


# What containerd-shim-spin v0.24 runs; anything else fails in the pod with "Only Http, Redis, MQTT,
# SQS, and Command triggers are currently supported", so it is refused before anything is pushed.
SHIM_TRIGGERS = frozenset({"http", "redis", "mqtt", "sqs", "command"})


KEPT_IMAGES_PER_APP = 100  # image references remembered for rollbacks (the history keeps fewer)


def check_shim_triggers(built: BuiltApp) -> None:
    """Raise ``UnsupportedApp`` when the app declares a trigger the Spin shim cannot run."""
    unsupported = sorted({t for t in built.spec.other_triggers if t not in SHIM_TRIGGERS})
    if unsupported:
        raise UnsupportedApp(
            what=f"app {built.spec.name}: the Spin shim runs only http, redis, mqtt, sqs and command "
            f"triggers; this app declares {', '.join(unsupported)}",
            where=str(built.spec.manifest_path),
            fix="run it with the local target, or move that trigger into an app of its own that stays off the cluster",
        )


def _app_settings(settings: Any, app: str) -> Any:
    getter = getattr(settings, "app", None)
    return getter(app) if callable(getter) else None


class KubeTarget:
    def __init__(
        self,
        store: Store,
        settings: Any,
        *,
        api_client: kubernetes.client.ApiClient,
        push_registry: str,
        pull_registry: str,
        namespace: str = "default",
        packager: Packager | None = None,
        http_base_url: str | None = None,
        context: str = "",
        runtime_class: str = DEFAULT_RUNTIME_CLASS,
        ingress_domain: str = "localhost",
        ingress_class: str | None = "traefik",
        rollout: RolloutPolicy | None = None,
        observe: ObserveSettings | None = None,
        name: str = "kube",
        image_store_dir: Path | None = None,
        ingress_check_s: float = 0.0,
        owns_client: bool = False,
    ) -> None:
        self.name = name
        self.store = store
        self.settings = settings
        self.apis = KubeApis(api_client)
        self.push_registry = push_registry
        self.pull_registry = pull_registry
        self.namespace = namespace
        self.http_base_url = http_base_url
        self.context = context
        self.runtime_class = runtime_class
        self.ingress_domain = ingress_domain
        self.ingress_class = ingress_class
        self.rollout = rollout or RolloutPolicy()
        store_dir = image_store_dir or Path.home() / ".cache" / "wasmdev" / "oci"
        self.packager = packager or oci_packager(store_dir)
        self.observer = ClusterObserver(store, self.apis, namespace, observe, where=self.where)
        self._deployed: dict[str, tuple[Manifest, str]] = {}  # app -> (applied Deployment, build)
        # app -> build digest -> the image this session deployed for it (a rollback applies it again)
        self._images: dict[str, dict[str, str]] = {}
        self._runtime_classes: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._closing = threading.Event()
        # > 0: after a rollout, wait up to this long for the app to answer through the ingress
        # (worth it where the host port is wasmdev's own, as with k3d; 0 = trust Ready pods).
        self.ingress_check_s = ingress_check_s
        self._owns_client = owns_client

    @property
    def where(self) -> str:
        context = f"context {self.context}, " if self.context else ""
        return f"{context}{self.apis.host}, namespace {self.namespace}"

    # --- Target ---------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._step("kube-api", "Kubernetes API", self._check_api)
        await self._step("kube-namespace", f"Namespace {self.namespace}", self._ensure_namespace)
        await self._step(
            "kube-runtimeclass", f"RuntimeClass {self.runtime_class}", self._ensure_default_class
        )

    async def deploy(self, built: BuiltApp) -> DeployResult:
        app = built.spec.name
        lock = self._locks.setdefault(app, asyncio.Lock())
        async with lock:
            return await self._deploy(built)

    def kept_image(self, app: str, digest: str) -> str | None:
        return self._images.get(app, {}).get(digest)

    async def redeploy_image(self, built: BuiltApp, image: str) -> DeployResult:
        lock = self._locks.setdefault(built.spec.name, asyncio.Lock())
        async with lock:
            return await self._deploy(built, image)

    async def remove(self, app: str) -> None:
        self.observer.untrack(app)
        self._deployed.pop(app, None)
        await asyncio.to_thread(delete_managed, self.apis, self.namespace, app, where=self.where)

    async def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        await asyncio.to_thread(self._close_blocking)

    def _close_blocking(self) -> None:
        self.observer.close()  # joins the observer's threads
        if self._owns_client:
            self.apis.client.close()  # joins the client's worker pool: not on the event loop either

    # --- deploy -----------------------------------------------------------------------------------

    def _workload(self, built: BuiltApp, image: str) -> Workload:
        app = built.spec.name
        s = _app_settings(self.settings, app)
        w = Workload(
            app=app,
            image=image,
            build=built.short_digest,
            runtime_class=self.runtime_class,
            ingress_domain=self.ingress_domain,
            ingress_class=self.ingress_class,
        )
        if s is None:
            return w
        return replace(
            w,
            runtime_class=getattr(s, "runtime_class", None) or self.runtime_class,
            replicas=int(getattr(s, "replicas", 1) or 1),
            cpu_request=getattr(s, "cpu_request", w.cpu_request),
            memory_request=getattr(s, "memory_request", w.memory_request),
            cpu_limit=getattr(s, "cpu_limit", w.cpu_limit),
            memory_limit=getattr(s, "memory_limit", w.memory_limit),
        )

    async def _deploy(self, built: BuiltApp, image: str | None = None) -> DeployResult:
        """Publish and roll out ``built``, or (a rollback) roll out the ``image`` kept for it."""
        app = built.spec.name
        check_shim_triggers(built)
        self.observer.track(app)  # pods show up in the UI while they roll out
        if image is None:
            published = await self._publish(built)
            pull_host, _ = split_registry(self.pull_registry)
            pull_host = pull_host.split("://", 1)[-1]
            image = f"{pull_host}/{published.repository}:{published.tag}"
        w = self._workload(built, image)
        previous = self._deployed.get(app)
        try:
            if w.runtime_class not in self._runtime_classes:
                await asyncio.to_thread(ensure_runtime_class, self.apis, w.runtime_class, where=self.where)
                self._runtime_classes.add(w.runtime_class)
            if previous is None:  # a version from an earlier session may be serving
                previous = await asyncio.to_thread(serving_deployment, self.apis, self.namespace, w.name)
        except WasmdevError:
            raise
        except Exception as err:  # noqa: BLE001 - ApiException or a transport error
            raise DeployError(
                what=f"app {app}: preparing the deploy failed: {api_error_text(err)}",
                where=self.where,
                fix="check the cluster is up (kubectl get nodes) and your permissions in the namespace",
            ) from err
        manifests = workload_manifests(w, self.namespace)
        await asyncio.to_thread(self._apply_all, app, manifests)
        try:
            await asyncio.to_thread(
                wait_for_rollout,
                self.apis,
                self.namespace,
                w.name,
                app,
                w.build,
                w.replicas,
                self.rollout,
                self._closing,
            )
        except RolloutFailed as err:
            rolled_back = await self._roll_back(app, previous)
            error = rollout_error(err, app=app, build=w.build, where=self.where, rolled_back_to=rolled_back)
            self._log(app, f"rollout of {w.build} failed; {error.what.splitlines()[0]}", level="error")
            raise error from None
        except ApiException as err:
            raise DeployError(
                what=f"app {app}: watching the rollout failed: {api_error_text(err)}", where=self.where
            ) from err
        self._deployed[app] = (deployment(w, self.namespace), w.build)
        kept = self._images.setdefault(app, {})
        kept[built.digest] = w.image
        for old in list(kept)[:-KEPT_IMAGES_PER_APP]:
            del kept[old]
        self._log(app, f"build {w.build} is serving ({w.image}, {w.replicas} replica(s))")
        urls = (app_url(w, self.http_base_url),) if self.http_base_url else ()
        notes: tuple[str, ...] = ()
        if not urls:
            notes = (f"routed by Ingress host {w.host}; point that name at the cluster's ingress",)
        elif self.ingress_check_s > 0:
            problem = await _entry_refused(urls[0]) or await wait_until_routed(urls[0], self.ingress_check_s)
            if problem:
                notes = (
                    f"pods are Ready but {urls[0]} does not answer yet ({problem}): check the host port "
                    f"mapping to the cluster's load balancer and that the ingress controller serves Ingress {w.name}",
                )
                self._log(app, notes[0], level="warn")
        return DeployResult(urls=urls, notes=notes)

    async def _publish(self, built: BuiltApp) -> PublishedImage:
        try:
            return await asyncio.to_thread(self.packager, built, self.push_registry)
        except WasmdevError:
            raise
        except (OSError, ValueError) as err:
            raise DeployError(
                what=f"app {built.spec.name}: pushing the image to {self.push_registry} failed: {err}",
                where=self.where,
                fix="check the registry is running and reachable from this machine (k3d: `k3d registry list`); "
                "for a plain-http registry that is not on localhost, set insecure_registry in wasmdev.toml",
            ) from err

    def _apply_all(self, app: str, manifests: list[Manifest]) -> None:
        for m in manifests:
            try:
                apply(self.apis, m, timeout=self.rollout.request_timeout_s)
            except ApiException as err:
                kind, name = m["kind"], m["metadata"]["name"]
                fix = "check your permissions (kubectl auth can-i patch deployments) and the namespace"
                if err.status == 404 and kind == "Ingress":
                    fix = "this cluster serves no networking.k8s.io/v1 Ingress API (Kubernetes < 1.19?)"
                raise DeployError(
                    what=f"app {app}: applying {kind} {name} failed: {api_error_text(err)}",
                    where=self.where,
                    fix=fix,
                ) from err
            except Exception as err:  # noqa: BLE001 - transport errors from urllib3 vary
                raise DeployError(
                    what=f"app {app}: cannot reach the API server to apply {m['kind']}: {api_error_text(err)}",
                    where=self.where,
                    fix="check the cluster is up (kubectl get nodes) and the kubeconfig context",
                ) from err

    async def _roll_back(self, app: str, previous: tuple[Manifest, str] | None) -> str | None:
        """Re-apply the last good Deployment so the failing pods are removed; returns its build."""
        if previous is None:
            return None
        manifest, build = previous
        try:
            await asyncio.to_thread(apply, self.apis, manifest, timeout=self.rollout.request_timeout_s)
        except Exception as err:  # noqa: BLE001 - the old pods still serve; say the rollback failed
            self._log(
                app, f"could not restore build {build}'s Deployment: {api_error_text(err)}", level="error"
            )
        return build

    # --- start steps ------------------------------------------------------------------------------

    async def _step(self, key: str, title: str, work: Callable[[], str]) -> None:
        started = time.time()
        self.store.dispatch(
            a.BootstrapStepChanged(StepState(key, title, StepStatus.RUNNING, started_at=started))
        )
        try:
            detail = await asyncio.to_thread(work)
        except WasmdevError as err:
            state = StepState(
                key, title, StepStatus.FAILED, started, time.time(), detail=err.what, fix=err.fix
            )
            self.store.dispatch(a.BootstrapStepChanged(state))
            raise
        state = StepState(key, title, StepStatus.DONE, started, time.time(), detail=detail)
        self.store.dispatch(a.BootstrapStepChanged(state))

    def _check_api(self) -> str:
        try:
            version = kubernetes.client.VersionApi(self.apis.client).get_code(
                _request_timeout=self.rollout.request_timeout_s
            )
        except Exception as err:  # noqa: BLE001 - connection refused, TLS, auth: all mean "not usable"
            raise TargetUnavailable(
                what=f"cannot reach the Kubernetes API server: {api_error_text(err)}",
                where=self.where,
                fix="check the cluster is running and the context is right: kubectl "
                + (f"--context {self.context} " if self.context else "")
                + "get nodes",
            ) from err
        return f"Kubernetes {version.git_version} at {self.apis.host}"

    def _ensure_namespace(self) -> str:
        try:
            self.apis.core.read_namespace(self.namespace, _request_timeout=self.rollout.request_timeout_s)
            return "exists"
        except ApiException as err:
            if err.status != 404:
                raise TargetUnavailable(
                    what=f"cannot read namespace {self.namespace}: {api_error_text(err)}",
                    where=self.where,
                    fix="use a namespace you may deploy to (--namespace / wasmdev.toml [kube] namespace)",
                ) from err
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        try:
            self.apis.core.create_namespace(body, _request_timeout=self.rollout.request_timeout_s)
        except ApiException as err:
            raise TargetUnavailable(
                what=f"namespace {self.namespace} does not exist and cannot be created: {api_error_text(err)}",
                where=self.where,
                fix=f"kubectl create namespace {self.namespace}, or pick an existing one",
            ) from err
        return "created"

    def _ensure_default_class(self) -> str:
        try:
            handler = ensure_runtime_class(self.apis, self.runtime_class, where=self.where)
        except DeployError as err:
            raise TargetUnavailable(what=err.what, where=err.where, fix=err.fix) from err
        self._runtime_classes.add(self.runtime_class)
        return f"handler {handler}"

    def _log(self, app: str, text: str, level: str = "info") -> None:
        self.store.dispatch(a.LogEmitted(LogLine(time.time(), app, LogStream.SYSTEM, text, level=level)))


async def _entry_refused(url: str, timeout_s: float = 2.0) -> str:
    """Empty when something accepts connections at ``url``'s host port, else why not.

    An ingress that is not routing yet still accepts the connection (k3d's serverlb answers
    502/503, Traefik 404) and is worth waiting for; a refused connection means no load balancer
    listens there at all, which waiting will not change.
    """
    target, _ = loopback_target(url)
    parts = urlsplit(target)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError) as err:
        return f"nothing accepts connections on {host}:{port} ({type(err).__name__})"
    writer.close()
    with suppress(OSError):
        await writer.wait_closed()
    return ""


def kube_target_from_settings(store: Store, settings: Any) -> KubeTarget:
    """``--target kube``: the kubeconfig context and registry from wasmdev.toml / flags.

    Reads the kubeconfig (blocking, small); raises ``TargetUnavailable`` naming the context and
    the fix when it cannot be used or no registry is set.
    """
    kube = settings.kube
    context = kube.context
    kubeconfig = str(kube.kubeconfig) if kube.kubeconfig else None
    if not kube.registry:
        raise TargetUnavailable(
            what="--target kube needs a registry the cluster's nodes can pull from",
            where="wasmdev.toml [kube] registry",
            fix="pass --registry HOST[:PORT]/REPO (or set registry under [kube]); wasmdev pushes each build there",
        )
    try:
        api_client = kubernetes.config.new_client_from_config(config_file=kubeconfig, context=context)
    except (kubernetes.config.ConfigException, OSError) as err:
        contexts = ""
        try:
            names = [
                c["name"] for c in kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)[0]
            ]
            contexts = f" (contexts there: {', '.join(names)})"
        except Exception:  # noqa: BLE001 - listing is only a hint
            pass
        raise TargetUnavailable(
            what=f"cannot load kubeconfig context {context or '(current)'}: {err}",
            where=kubeconfig or "~/.kube/config (or $KUBECONFIG)",
            fix=f"pass --context NAME with a context from the kubeconfig{contexts}",
        ) from err
    if not context:
        try:
            context = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)[1]["name"]
        except Exception:  # noqa: BLE001 - only used in messages
            context = ""
    registry = kube.registry
    if kube.insecure_registry and "://" not in registry:
        registry = f"http://{registry}"
    return KubeTarget(
        store,
        settings,
        api_client=api_client,
        push_registry=registry,
        pull_registry=kube.registry,
        namespace=kube.namespace,
        context=context,
        runtime_class=kube.runtime_class,
        ingress_domain="localhost",
        ingress_class=None,  # an existing cluster's default IngressClass, whatever it is
        packager=oci_packager(Path(settings.root) / ".wasmdev" / "oci", insecure=kube.insecure_registry),
        owns_client=True,
    )
