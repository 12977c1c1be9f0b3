"""Refuse, before anything is rolled out, an app whose components the nodes' Spin cannot run.

Without this a WASI 0.3 component on a Spin 3 node is pushed, rolled out and crash-loops (the
shim exits 137 with empty logs, reference §11); the world is known from the wasm's names alone
(devenv/component_world.py), so the check costs milliseconds and names the fix.
"""

from __future__ import annotations

from devenv.component_world import NotWasm, read_world, spin_serves
from devenv.errors import DeployError
from devenv.model import BuiltApp, NodeRuntime
from devenv.targets.cluster.node_image import DEFAULT_SHIM, SHIM_SPIN_VERSIONS, newest_shim_for


def check_app_runs_on(built: BuiltApp, runtime: NodeRuntime) -> None:
    """Raise DeployError naming the component, the node's Spin and the fix, if the node's Spin
    cannot serve a component of ``built``. A node whose Spin is unknown is not second-guessed."""
    have = runtime.spin_version
    if have is None:
        return
    for component, path in built.wasm.items():
        try:
            world = read_world(path)
        except (OSError, NotWasm):
            continue  # packaging reports an unreadable file itself
        if spin_serves(world, have):
            continue
        need = world.min_spin
        assert need is not None
        export = world.http_export or "WASI 0.3 interfaces"
        what = (
            f"app {built.spec.name}: component {component} needs Spin {need[0]}.{need[1]} or later "
            f"(it exports {export}); this node runs {runtime.describe()}"
        )
        shim = newest_shim_for(need)
        if shim is not None:
            fix = (
                f"rebuild the node with `wasmdev cluster image --shim {shim}` and recreate the cluster "
                f'(`wasmdev cluster delete`, then `wasmdev cluster create` with [cluster].shim = "{shim}" '
                "and no [cluster].image)"
            )
        else:
            fix = (
                f"no containerd-shim-spin release wasmdev knows embeds Spin {need[0]}.{need[1]} (the "
                f"newest, {DEFAULT_SHIM}, has Spin {SHIM_SPIN_VERSIONS[DEFAULT_SHIM]}): build the component "
                "for Spin 4.0 (wasi:http/handler@0.3.0-rc-2026-03-15) or 3 (incoming-handler@0.2), or run "
                f'it locally under an installed Spin ≥ {need[0]}.{need[1]} ([local] runtime = "spin")'
            )
        raise DeployError(what=what, where=str(path), fix=fix)
