"""Helpers for the kube target tests: a trivial packager, builds, fast policies, an engine stand-in."""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devenv.errors import DeployError
from devenv.model import AppSpec, BuiltApp, LogStream
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.cluster.bootstrap import BootstrapOptions
from devenv.targets.cluster.k3d_target import K3dTarget
from devenv.targets.cluster.kube import KubeTarget, PublishedImage
from devenv.targets.cluster.node_readiness import Polling
from devenv.targets.cluster.observe import ObserveSettings
from devenv.targets.cluster.rollout import RolloutPolicy
from tests.fakes.apiserver import FakeApiServer
from tests.fakes.k3d.harness import FakeK3d

FAST_ROLLOUT = RolloutPolicy(timeout_s=20.0, poll_s=0.02, scheduling_grace_s=0.1, request_timeout_s=5.0)
FAST_OBSERVE = ObserveSettings(
    metrics_interval_s=0.05,
    backoff_initial_s=0.02,
    backoff_max_s=0.2,
    watch_timeout_s=30,
    log_idle_timeout_s=30.0,
    request_timeout_s=2.0,
)
FAST_BOOTSTRAP = BootstrapOptions(docker_ping=lambda: None, polling=Polling(timeout=5.0, interval=0.02))
PUSH = "localhost:5001"
PULL = "wasmdev-registry:5000"


def build(app: str, version: str) -> BuiltApp:
    spec = AppSpec(name=app, manifest_path=Path(f"/workspace/{app}/spin.toml"))
    digest = "sha256:" + hashlib.sha256(f"{app}/{version}".encode()).hexdigest()
    return BuiltApp(spec=spec, digest=digest, wasm={}, built_at=time.time())


@dataclass
class RecordingPackager:
    """Stands in for package + push: records what it was asked, answers a content-derived tag."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, built: BuiltApp, push_registry: str) -> PublishedImage:
        self.calls.append((built.spec.name, push_registry))
        return PublishedImage(repository=built.spec.name, tag=f"b-{built.short_digest}", digest=built.digest)


def image_of(built: BuiltApp) -> str:
    return f"{PULL}/{built.spec.name}:b-{built.short_digest}"


@dataclass(frozen=True)
class FakeAppSettings:
    runtime_class: str | None = None
    replicas: int = 1
    cpu_request: str = "100m"
    memory_request: str = "64Mi"
    cpu_limit: str = "500m"
    memory_limit: str = "128Mi"


@dataclass
class FakeSettings:
    apps: dict[str, FakeAppSettings] = field(default_factory=dict)

    def app(self, name: str) -> FakeAppSettings:
        return self.apps.get(name, FakeAppSettings())


def make_target(server: FakeApiServer, store: Store, **overrides: Any) -> KubeTarget:
    kwargs: dict[str, Any] = {
        "api_client": server.api_client(),
        "push_registry": PUSH,
        "pull_registry": PULL,
        "namespace": "default",
        "packager": RecordingPackager(),
        "http_base_url": "http://localhost:8081",
        "context": "k3d-test",
        "rollout": FAST_ROLLOUT,
        "observe": FAST_OBSERVE,
    }
    settings = overrides.pop("settings", FakeSettings())
    kwargs.update(overrides)
    return KubeTarget(store, settings, **kwargs)


async def deploy_like_engine(store: Store, target: KubeTarget, built: BuiltApp) -> DeployError | None:
    """What the engine does around a deploy: the store learns the outcome. Returns the error, if any."""
    if built.spec.name not in store.state.apps:
        store.dispatch(a.AppLoaded(built.spec))
    store.dispatch(a.DeployStarted(built.spec.name, built.digest, time.time()))
    try:
        result = await target.deploy(built)
    except DeployError as err:
        store.dispatch(a.DeployFailed(built.spec.name, built.digest, str(err), time.time()))
        return err
    store.dispatch(a.VersionServing(built.spec.name, built.digest, result.urls, time.time()))
    return None


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate``; fail with ``what`` if it never holds (a generous bound, not a speed test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def pod_lines(store: Store, app: str) -> list[str]:
    return [line.text for line in store.logs.tail(10_000) if line.app == app and line.stream is LogStream.POD]


def system_lines(store: Store, app: str) -> list[str]:
    return [
        line.text for line in store.logs.tail(10_000) if line.app == app and line.stream is LogStream.SYSTEM
    ]


def observer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("wasmdev-observe")]


def make_k3d_target(
    fake: FakeK3d,
    cluster: Any,
    tmp_path: Path,
    store: Store,
    options: BootstrapOptions = FAST_BOOTSTRAP,
) -> K3dTarget:
    """A K3dTarget on the fake k3d (``cluster``: ClusterSettings), with fast rollouts and observers."""
    from devenv.config import Settings

    return K3dTarget(
        store,
        Settings(root=tmp_path, cluster=cluster),
        cli=fake.cli(cluster.kubeconfig),
        bootstrap_options=options,
        kube_target_factory=functools.partial(KubeTarget, rollout=FAST_ROLLOUT, observe=FAST_OBSERVE),
        image_store_dir=tmp_path / "oci",
    )
