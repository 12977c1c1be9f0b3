"""Link a component's imports: our Python interfaces where we have them, a logged trap elsewhere.

The component's own import names (``wasi:http/types@0.2.9``, ``fermyon:spin/key-value@2.0.0``,
from ``Component.type.imports``) are what gets defined. A WASI 0.2.x interface we implement is
defined from our tables (``Interface``): its resources as host resource types, its functions
through ``fastcall``. Everything else (other packages, functions we lack, release candidates) is
defined by wasmtime as a trap; ``unknown_import_note`` turns that trap into a log line naming
the import and why it is refused, and the request fails with a 500 while the server keeps
serving.

Each table lists only the resources its interface defines, never one it ``use``s from another
(wasi:cli/stdout's ``output-stream`` is wasi:io/streams'): wasmtime checks that a resource has
one identity across imports. It does not check host function signatures, so each function's
results are encoded for the exact type the component imports (see codec).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import wasmtime
from wasmtime.component import Component, FuncType, Linker, ResourceType

from devenv.targets.local.wasi import fastcall
from devenv.targets.local.wasi.codec import encoder
from devenv.targets.local.wasi.host import GuestTrap, current

HostFn = Callable[..., Any]  # fn(ctx, *params) -> plain result (see codec)

# WASI 0.2.x releases share one shape; release candidates and 0.3 do not, so they get traps.
_WASI_02 = re.compile(r"^(?P<name>[^@]+)@0\.2\.\d+$")


@dataclass(frozen=True)
class Interface:
    name: str  # without the version, e.g. "wasi:io/streams"
    resources: Mapping[str, int] = field(default_factory=dict)
    functions: Mapping[str, HostFn] = field(default_factory=dict)


@dataclass
class LinkReport:
    implemented: list[str] = field(default_factory=list)  # "iface#func" we provide
    stubbed: list[str] = field(default_factory=list)  # imports left to wasmtime's traps
    refusals: dict[str, str] = field(default_factory=dict)  # package -> why it is refused


def split_version(import_name: str) -> tuple[str, bool]:
    """("wasi:io/streams", True) for "wasi:io/streams@0.2.9"; the bool says it is a 0.2.x release."""
    m = _WASI_02.match(import_name)
    if m:
        return m.group("name"), True
    return import_name.split("@", 1)[0], False


def link_imports(
    linker: Linker,
    component: Component,
    engine: wasmtime.Engine,
    interfaces: Iterable[Interface],
    refusals: Mapping[str, str] | None = None,
    import_names: Iterable[str] | None = None,
) -> LinkReport:
    """Define every import of ``component`` in ``linker``. ``refusals`` maps a package
    ("wasi:sockets") to the reason logged when one of its functions is called. ``import_names``
    are the component's imports when the caller already read them (``World.imports``): reading
    a large component's type through the C API costs milliseconds each time."""
    by_name = {i.name: i for i in interfaces}
    report = LinkReport()
    with linker.root() as root:
        names = component.type.imports(engine) if import_names is None else import_names
        for import_name in names:
            name, is_02 = split_version(import_name)
            # A WASI 0.2.x interface by its unversioned name (one table serves every 0.2
            # release); anything else (Spin's fermyon:spin/*@2.0.0, wasi:keyvalue drafts) only
            # by its exact versioned name.
            iface = by_name.get(name) if is_02 else by_name.get(import_name)
            if iface is None:
                report.stubbed.append(import_name)
                continue
            # Defined from our own tables, not from the component's types: reading those through
            # the C API was most of the link time. Definitions the component does not import are
            # harmless; imports we lack are left to wasmtime's traps below.
            with root.add_instance(import_name) as inst:
                for resource, kind in iface.resources.items():
                    inst.add_resource(resource, ResourceType.host(int(kind)), _dtor)
                for func_name, impl in iface.functions.items():
                    qualified = f"{import_name}#{func_name}"
                    fastcall.add_func(inst, func_name, functools.partial(_host_func, qualified, impl))
                    report.implemented.append(qualified)
    linker.define_unknown_imports_as_traps(component)
    report.refusals = dict(refusals or {})
    return report


_UNKNOWN_IMPORT = re.compile(r"unknown import: `?(?P<name>[^`\s]+?)`? has not been defined")


def unknown_import_note(report: LinkReport, trap_message: str) -> str | None:
    """The log line for a trap wasmtime raised in an import we left to it, or None."""
    m = _UNKNOWN_IMPORT.search(trap_message)
    if m is None:
        return None
    qualified = m.group("name")
    package = qualified.split("/", 1)[0]
    why = (
        report.refusals.get(package)
        or "not supported by the local target (run the app on the cluster target)"
    )
    return f"unsupported import {qualified}: {why}"


def _dtor(store: Any, rep: int) -> None:
    # The guest dropped a handle to one of our resources.
    try:
        ctx = current()
    except GuestTrap:
        return
    ctx.dropped(rep)


def _host_func(qualified: str, impl: HostFn, ty: FuncType) -> Callable[..., Any]:
    """The body of an implemented import, made at its first call (see fastcall.add_func)."""
    encode = encoder(ty.result)

    def call(store: Any, *params: Any) -> Any:
        ctx = current()
        ctx.store = store
        try:
            return encode(impl(ctx, *params))
        except GuestTrap:
            raise
        except Exception as err:  # a bug on our side: trap this request, say where
            ctx.trap(f"host error in {qualified}: {type(err).__name__}: {err}")
        finally:
            ctx.store = None

    return call
