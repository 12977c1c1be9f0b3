"""``fermyon:spin/variables@2.0.0`` and ``wasi:config/store@0.2.0-draft-2024-09-27`` (the draft
Spin 3 ships) over a component's resolved variables, with Spin's errors: a malformed name is
``invalid-name``, a name the component does not declare ``undefined``; wasi:config answers both
with ``none``, as Spin does."""

from __future__ import annotations

from typing import Any

from devenv.targets.local.spin.resolve import valid_variable_name
from devenv.targets.local.spin.state import SpinHost
from devenv.targets.local.wasi.codec import Case, Err, Ok
from devenv.targets.local.wasi.host import HostContext
from devenv.targets.local.wasi.registry import Interface


def spin_of(ctx: HostContext) -> SpinHost:
    spin = ctx.config.spin
    if spin is None:  # build_runner refuses such a component at deploy; never reached
        ctx.trap("Spin's host APIs were not configured for this component")
    return spin


def _get(ctx: HostContext, name: str) -> Any:
    if not valid_variable_name(name):
        return Err(Case("invalid-name", f"{name!r}: variable names are lower_snake_case"))
    value = spin_of(ctx).variables.get(name)
    if value is None:
        return Err(Case("undefined", f"no variable for {ctx.config.component_id!r}.{name!r}"))
    return Ok(value)


def _config_get(ctx: HostContext, key: str) -> Any:
    value = spin_of(ctx).variables.get(key) if valid_variable_name(key) else None
    return Ok(value)


def _config_get_all(ctx: HostContext) -> Any:
    return Ok(sorted(spin_of(ctx).variables.items()))


INTERFACES = [
    Interface("fermyon:spin/variables@2.0.0", functions={"get": _get}),
    Interface(
        "wasi:config/store@0.2.0-draft-2024-09-27",
        functions={"get": _config_get, "get-all": _config_get_all},
    ),
]
