"""The k3d target: bootstrap (or reuse) the local cluster, then deploy exactly like ``--target kube``.

Everything after the bootstrap is the kube target's job; this only decides how images reach the
nodes:
- with a k3d registry (the default): push from the host to ``localhost:PORT`` and let pods pull
  ``k3d-REGISTRY:5000/APP:TAG``, the name k3d writes a plain-http mirror for into every node's
  registries.yaml (``localhost:PORT`` inside a pod would point at the pod itself);
- with ``[cluster].registry_name = ""``: write each image as an OCI archive and ``k3d image
  import`` it into every node's containerd, under a name no registry serves, pulled
  ``IfNotPresent`` (the tags are content-derived, so a new build is a new name).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devenv.errors import DeployError, TargetUnavailable
from devenv.model import BuiltApp, StepState
from devenv.store.actions import BootstrapStepChanged, NodeRuntimeDetected
from devenv.store.store import Store
from devenv.targets.base import DeployResult
from devenv.targets.cluster.bootstrap import BootstrapOptions, ClusterEndpoint, bootstrap_cluster
from devenv.targets.cluster.k3d import K3dCli, K3dCommandError
from devenv.targets.cluster.kube import KubeTarget, Packager, PublishedImage, oci_packager
from devenv.targets.cluster.runtime_check import check_app_runs_on

# Pods name imported images with this host; nothing resolves it, so nothing is ever pulled from it.
IMPORTED_IMAGE_HOST = "wasmdev.local"

KubeTargetFactory = Callable[..., Any]

# After each rollout, wait up to this long for the app to answer through the host port, so
# edit-to-serving ends with a response through the same path a browser takes (host port → k3d's
# serverlb → Traefik → Service → pod) rather than at "pods Ready", which comes before Traefik has
# picked up a new Ingress. On a real cluster the serverlb holds the host port for the cluster's
# whole life and answers 404/502/503 until the route works, and the wait covers that gap; when
# nothing listens on the port at all (no load balancer: nothing serves app traffic, as with the
# fake API server in tests) the check gives up at once with a note instead of waiting this long.
INGRESS_CHECK_S = 30.0


def import_packager(cli: K3dCli, cluster: str, store_dir: Path) -> Packager:
    """Package, write an OCI archive, ``k3d image import`` it. Blocking, like every Packager."""

    def publish(built: BuiltApp, _push_registry: str) -> PublishedImage:
        from devenv.oci import normalize_repository, package_app, write_oci_archive

        image = package_app(built, store_dir)
        repository = normalize_repository(built.spec.name)
        with tempfile.TemporaryDirectory(prefix="wasmdev-import-") as tmp:
            archive = write_oci_archive(
                image,
                Path(tmp) / f"{repository.replace('/', '-')}.tar",
                f"{IMPORTED_IMAGE_HOST}/{repository}:{image.tag}",
            )
            try:
                # A worker thread has no event loop of its own, so one is made for this call.
                asyncio.run(cli.import_image(archive, cluster))
            except K3dCommandError as err:
                raise DeployError(
                    what=f"app {built.spec.name}: {err.what}",
                    where=f"k3d cluster {cluster}",
                    fix="check the cluster is running (`wasmdev cluster status`), or use a registry: "
                    "set [cluster].registry_name in wasmdev.toml",
                ) from err
        return PublishedImage(repository=repository, tag=image.tag)

    return publish


class K3dTarget:
    """``wasmdev up --target k3d``: a local k3d cluster with the Spin shim, made on demand."""

    name = "k3d"

    def __init__(
        self,
        store: Store,
        settings: Any,
        *,
        cli: K3dCli | None = None,
        bootstrap_options: BootstrapOptions | None = None,
        kube_target_factory: KubeTargetFactory = KubeTarget,
        image_store_dir: Path | None = None,
        ingress_check_s: float = INGRESS_CHECK_S,
    ) -> None:
        self.store = store
        self.settings = settings  # devenv.config.Settings: [cluster] here, [apps.*] for the deployer
        self.cluster = settings.cluster
        self.cli = cli or K3dCli(self.cluster.kubeconfig)
        self.bootstrap_options = bootstrap_options
        self.kube_target_factory = kube_target_factory
        self.image_store_dir = image_store_dir or Path.home() / ".cache" / "wasmdev" / "oci"
        self.ingress_check_s = ingress_check_s
        self.endpoint: ClusterEndpoint | None = None
        self.kube: Any = None
        self._noted: set[str] = set()  # apps already told the endpoint's notes

    async def start(self) -> None:
        self.endpoint = await bootstrap_cluster(
            self.cluster, self._dispatch_step, cli=self.cli, options=self.bootstrap_options
        )
        if self.endpoint.node_runtime is not None:
            self.store.dispatch(NodeRuntimeDetected(self.endpoint.node_runtime))
        self.kube = self.kube_target_factory(
            self.store, self.settings, **await self._kube_arguments(self.endpoint)
        )
        await self.kube.start()

    async def deploy(self, built: BuiltApp) -> DeployResult:
        kube = self._started()
        if self.endpoint is not None and self.endpoint.node_runtime is not None:
            # Before packaging or rollout: what the node cannot run must not replace what serves.
            await asyncio.to_thread(check_app_runs_on, built, self.endpoint.node_runtime)
        result = await kube.deploy(built)
        # The cluster's own notes (a registry the nodes may not mirror, another HTTP port) are
        # said once per app, not again on every edit's redeploy.
        notes: tuple[str, ...] = ()
        if self.endpoint and built.spec.name not in self._noted:
            self._noted.add(built.spec.name)
            notes = self.endpoint.notes
        return DeployResult(urls=result.urls, notes=tuple(result.notes) + tuple(notes))

    def kept_image(self, app: str, digest: str) -> str | None:
        return self.kube.kept_image(app, digest) if self.kube is not None else None

    async def redeploy_image(self, built: BuiltApp, image: str) -> DeployResult:
        return await self._started().redeploy_image(built, image)

    async def remove(self, app: str) -> None:
        await self._started().remove(app)

    async def close(self) -> None:
        # The cluster outlives the session (`wasmdev cluster delete` removes it); only stop watching.
        if self.kube is not None:
            await self.kube.close()

    # --- wiring ------------------------------------------------------------------------------------

    def _dispatch_step(self, step: StepState) -> None:
        self.store.dispatch(BootstrapStepChanged(step))

    def _started(self) -> Any:
        if self.kube is None:
            raise TargetUnavailable(what="the k3d target was used before start()", fix="call start() first")
        return self.kube

    async def _kube_arguments(self, endpoint: ClusterEndpoint) -> dict[str, Any]:
        from kubernetes import config

        api_client = await asyncio.to_thread(
            config.new_client_from_config, config_file=str(endpoint.kubeconfig), context=endpoint.context
        )
        args: dict[str, Any] = {
            "api_client": api_client,
            "namespace": self.cluster.namespace,
            "context": endpoint.context,
            "runtime_class": self.cluster.runtime_class,
            "http_base_url": f"http://localhost:{endpoint.http_port}",
            "name": self.name,
            "image_store_dir": self.image_store_dir,
            "ingress_check_s": self.ingress_check_s,
            "owns_client": True,  # made here for the kube target alone: its close() closes it
        }
        if endpoint.registry is not None:
            args["push_registry"] = endpoint.registry.push_host
            args["pull_registry"] = endpoint.registry.pull_host
            args["packager"] = oci_packager(self.image_store_dir)
        else:
            args["push_registry"] = ""
            args["pull_registry"] = IMPORTED_IMAGE_HOST
            args["packager"] = import_packager(self.cli, endpoint.name, self.image_store_dir)
        return args
