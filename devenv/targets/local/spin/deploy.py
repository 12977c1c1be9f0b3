"""Spin's host APIs at deploy: what ``component_host.build_runner`` checks and gives a component.

``SpinAppSettings`` is what the serving side passes per app and deploy; ``check_imports`` refuses
(or notes) imports this host never serves; ``spin_host`` resolves the component's variables and
stores, so a missing required variable or an undefined store fails the deploy, not a request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devenv.errors import DeployError
from devenv.model import AppSpec, ComponentSpec
from devenv.runtime_config import RuntimeConfig
from devenv.targets.local.spin.imports import HOSTED, REFUSED_FIX, describe, split_unhosted
from devenv.targets.local.spin.interfaces import spin_interfaces
from devenv.targets.local.spin.resolve import build_spin_host
from devenv.targets.local.spin.state import SpinHost, SqliteFile
from devenv.targets.local.wasi import all_interfaces
from devenv.targets.local.wasi.registry import Interface
from devenv.targets.local.wasi.worlds import World


@dataclass(frozen=True)
class SpinAppSettings:
    """What the serving side passes ``build_runner`` for Spin's host APIs, per app and deploy.

    ``env`` is where ``SPIN_VARIABLE_*`` are read (``wasmdev up``'s environment); ``files`` is one
    dict shared by every component of one deploy, so components granted the same store share
    one SQLite connection; ``self_origin`` is the app's own "host:port" (``http://self``)."""

    app: AppSpec
    env: Mapping[str, str] = field(default_factory=dict)
    runtime_config: RuntimeConfig | None = None
    self_origin: str | None = None
    files: dict[Path | None, SqliteFile] = field(default_factory=dict)


def host_interfaces() -> list[Interface]:
    return [*all_interfaces(), *spin_interfaces()]


def check_imports(
    component: ComponentSpec, world: World, interfaces: Sequence[Interface], spin_app: SpinAppSettings | None
) -> tuple[str, ...]:
    """Refuse, at deploy, a component importing what this host never serves (LLM inferencing,
    ...): the request that first calls it would only ever trap. Imports that came with Spin 2's
    whole platform world (componentize-py imports all of it to call any of it) cannot refuse
    the deploy: they are returned as notes for the deploy result instead."""
    refused, bundled = split_unhosted(world.imports, interfaces)
    app = f"app `{spin_app.app.name}`, " if spin_app is not None else ""
    notes = (
        [
            f"{app}component `{component.id}`: "
            + ", ".join(describe(i) for i in bundled)
            + " came with Spin's platform world (componentize-py imports it whole) and "
            + ("is" if len(bundled) == 1 else "are")
            + " not hosted locally; only a request that calls "
            + ("it" if len(bundled) == 1 else "one")
            + ' fails. Fix: for an app that does, `[local] runtime = "spin"` (with Spin installed) or `--target k3d`'
        ]
        if bundled
        else []
    )
    if not refused:
        return tuple(notes)
    raise DeployError(
        what=f"{app}component `{component.id}` imports "
        + ", ".join(describe(i) for i in refused)
        + f", which the local target does not host (it hosts {HOSTED})",
        where=f"{spin_app.app.manifest_path} [component.{component.id}]" if spin_app else component.id,
        fix=REFUSED_FIX,
    )


def spin_host(component: ComponentSpec, spin_app: SpinAppSettings | None) -> SpinHost:
    """The component's variables and stores, resolved now so that a missing required variable or
    an undefined store fails this deploy, not a request."""
    if spin_app is None:
        # No app settings from the serving side: componentize-py imports Spin's whole platform
        # world even for an app that never calls it, so this must not refuse. The component
        # sees no variables and no stores (undefined / access-denied, each logged).
        return SpinHost(component.id)
    return build_spin_host(spin_app.app, component, spin_app.env, spin_app.runtime_config, spin_app.files)
