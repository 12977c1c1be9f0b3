"""RuntimeClasses: make sure the one an app runs with exists before pods ask for it.

wasmdev's default is ``wasmtime-spin-v2`` with handler ``spin`` (SpinKube's convention; k3s also
auto-creates a class named ``spin`` when it finds the shim). Apps may pick another class in
wasmdev.toml (``wasmtime``, ``wasmedge``, ``wws``, ``slight``, ``lunatic``, ``wasmer``: the shims
k3s detects), for node images that carry them.

An existing class is never modified: ``handler`` is immutable, and the class may belong to an
operator or to k3s. A missing class wasmdev knows the handler of is created (labelled as wasmdev's);
a missing class it does not know is an error, because a pod naming it would be rejected at
admission with a message far from the cause.
"""

from __future__ import annotations

from kubernetes.client.exceptions import ApiException

from devenv.errors import DeployError
from devenv.targets.cluster.resources import DEFAULT_RUNTIME_CLASS, runtime_class
from devenv.targets.cluster.rollout import KubeApis, api_error_text, apply

# RuntimeClass name -> containerd handler, for the classes wasmdev may create itself.
KNOWN_HANDLERS: dict[str, str] = {
    "wasmtime-spin-v2": "spin",
    "wasmtime-spin": "spin",
    "spin": "spin",
    "wasmtime": "wasmtime",
    "wasmedge": "wasmedge",
    "wws": "wws",
    "slight": "slight",
    "lunatic": "lunatic",
    "wasmer": "wasmer",
}


def ensure_runtime_class(
    apis: KubeApis, name: str = DEFAULT_RUNTIME_CLASS, *, where: str = "", timeout: float = 15.0
) -> str:
    """Make sure RuntimeClass ``name`` exists; returns its handler. Blocking (worker thread)."""
    try:
        existing = apis.plain(apis.node.read_runtime_class(name, _request_timeout=timeout))
        return str(existing.get("handler", ""))
    except ApiException as err:
        if err.status != 404:
            raise DeployError(
                what=f"cannot read RuntimeClass {name!r}: {api_error_text(err)}",
                where=where,
                fix="check that your credentials may read runtimeclasses.node.k8s.io (kubectl auth can-i get runtimeclasses)",
            ) from err
    handler = KNOWN_HANDLERS.get(name)
    if handler is None:
        known = ", ".join(sorted(KNOWN_HANDLERS))
        raise DeployError(
            what=f"RuntimeClass {name!r} does not exist in the cluster and wasmdev does not know its handler",
            where=where,
            fix=f"create it (kubectl apply a node.k8s.io/v1 RuntimeClass with the shim's handler) or pick one of: {known}",
        )
    try:
        apply(apis, runtime_class(name, handler), timeout=timeout)
    except ApiException as err:
        raise DeployError(
            what=f"cannot create RuntimeClass {name!r} (handler {handler!r}): {api_error_text(err)}",
            where=where,
            fix="ask a cluster admin to create it, or pick an existing class (kubectl get runtimeclass)",
        ) from err
    return handler
