"""Removing what wasmdev made in a namespace, found by its labels and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from devenv.errors import DeployError
from devenv.targets.cluster.resources import managed_selector
from devenv.targets.cluster.rollout import KubeApis, api_error_text


def delete_managed(apis: KubeApis, namespace: str, app: str | None = None, *, where: str = "") -> list[str]:
    """Delete the Deployments, Services and Ingresses wasmdev made (for ``app``, or all of them).

    Found by label, so nothing wasmdev did not create is touched. Returns ``Kind/name`` of each
    deleted object. Blocking (worker thread).
    """
    selector = managed_selector(app)
    kinds: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
        ("Ingress", apis.networking.list_namespaced_ingress, apis.networking.delete_namespaced_ingress),
        ("Service", apis.core.list_namespaced_service, apis.core.delete_namespaced_service),
        ("Deployment", apis.apps.list_namespaced_deployment, apis.apps.delete_namespaced_deployment),
    ]
    deleted = []
    for kind, list_call, delete_call in kinds:
        try:
            for obj in list_call(namespace, label_selector=selector).items:
                try:
                    delete_call(obj.metadata.name, namespace)
                except ApiException as err:
                    if err.status != 404:  # already gone is what we wanted
                        raise
                deleted.append(f"{kind}/{obj.metadata.name}")
        except ApiException as err:
            raise DeployError(
                what=f"deleting wasmdev's {kind} objects ({selector}) failed: {api_error_text(err)}",
                where=where or namespace,
                fix="check your permissions in that namespace (kubectl auth can-i delete deployments)",
            ) from err
    return deleted
