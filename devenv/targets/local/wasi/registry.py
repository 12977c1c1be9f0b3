"""Link a component's imports: our Python interfaces where we have them, a logged trap elsewhere.

Imports are read from the component's own type (``Component.type.imports``), so the exact names
it asks for (``wasi:http/types@0.2.9``, ``fermyon:spin/key-value@2.0.0``) are what gets defined.
Every function gets a definition: ours, or a stub that writes "unsupported import X" to the
app's log and traps that request (the server answers 500 and keeps serving). wasmtime checks only
resource identity at link time, not host function signatures, so each implementation's result is
encoded for the exact type the component imports (see codec).

Resources: an instance type lists both the resources it defines and the ones it ``use``s from
another interface (wasi:cli/stdout's ``output-stream`` is wasi:io/streams'). Only the defining
instance may define it; a ``use`` is recognised because its type equals one seen in an earlier
import (imports come in dependency order).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import wasmtime
from wasmtime.component import Component, ComponentInstanceType, FuncType, Linker, ResourceType

from devenv.targets.local.wasi import fastcall
from devenv.targets.local.wasi.codec import Encoder, encoder
from devenv.targets.local.wasi.host import FIRST_STUB_KIND, GuestTrap, HostContext, current

HostFn = Callable[..., Any]  # fn(ctx, *params) -> plain result (see codec)

# WASI 0.2.x releases share one shape; release candidates and 0.3 do not, so they get stubs.
_WASI_02 = re.compile(r"^(?P<name>[^@]+)@0\.2\.\d+$")


@dataclass(frozen=True)
class Interface:
    name: str  # without the version, e.g. "wasi:io/streams"
    resources: Mapping[str, int] = field(default_factory=dict)
    functions: Mapping[str, HostFn] = field(default_factory=dict)
    # Why calls to the functions we leave out are refused (None: "not supported locally").
    refusal: str | None = None


@dataclass
class LinkReport:
    implemented: list[str] = field(default_factory=list)  # "iface#func" we provide
    stubbed: list[str] = field(default_factory=list)  # imports that trap with a log line
    refusals: dict[str, str] = field(default_factory=dict)  # package -> why it is refused


def split_version(import_name: str) -> tuple[str, bool]:
    """("wasi:io/streams", True) for "wasi:io/streams@0.2.9"; the bool says it is a 0.2.x release."""
    m = _WASI_02.match(import_name)
    if m:
        return m.group("name"), True
    return import_name.split("@", 1)[0], False


_stub_kinds = itertools.count(FIRST_STUB_KIND)


def link_imports(
    linker: Linker,
    component: Component,
    engine: wasmtime.Engine,
    interfaces: Iterable[Interface],
    refusals: Mapping[str, str] | None = None,
) -> LinkReport:
    """Define every import of ``component`` in ``linker``. ``refusals`` maps a package
    ("wasi:sockets") to the reason logged when one of its functions is called.

    Only the interfaces we implement are walked item by item (reading a component's types
    through the C API is slow: an 18 MB Python component has ~40 imports). The rest are
    defined in one call by wasmtime as traps; ``unknown_import_note`` turns such a trap into
    the same log line a stub gives."""
    by_name = {i.name: i for i in interfaces}
    report = LinkReport()
    seen: list[ResourceType] = []
    with linker.root() as root:
        for import_name, extern in component.type.imports(engine).items():
            name, is_02 = split_version(import_name)
            iface = by_name.get(name) if is_02 else None
            if iface is None:
                report.stubbed.append(import_name)
                continue
            ty = extern.ty
            if not isinstance(ty, ComponentInstanceType):
                continue
            with root.add_instance(import_name) as inst:
                for item_name, item in ty.exports(engine).items():
                    item_ty = item.ty
                    if isinstance(item_ty, ResourceType):
                        if any(item_ty == s for s in seen):
                            continue  # a `use` of a resource another interface defines
                        seen.append(item_ty)
                        kind = iface.resources.get(item_name)
                        inst.add_resource(
                            item_name, ResourceType.host(kind if kind is not None else next(_stub_kinds)), _dtor
                        )
                    elif isinstance(item_ty, FuncType):
                        qualified = f"{import_name}#{item_name}"
                        impl = iface.functions.get(item_name)
                        if impl is None:
                            inst.add_func(item_name, _stub(qualified, iface.refusal))
                            report.stubbed.append(qualified)
                        else:
                            fastcall.add_func(inst, item_name, _host_func(qualified, impl, item_ty), item_ty)
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
    why = report.refusals.get(package) or "not supported by the local target (run the app on the cluster target)"
    return f"unsupported import {qualified}: {why}"


def _dtor(store: Any, rep: int) -> None:
    # The guest dropped a handle to one of our resources.
    try:
        ctx = current()
    except GuestTrap:
        return
    ctx.dropped(rep)


_encoders: dict[str, Encoder] = {}  # "wasi:io/streams@0.2.9#..." -> encoder; one WIT, one shape


def _host_func(qualified: str, impl: HostFn, ty: FuncType) -> Callable[..., Any]:
    # The result encoder is compiled on the first call: most imports are never called, and
    # reading a variant type's cases (error-code has 39) is the slow part of linking.
    result_type: list[FuncType | None] = [ty]

    def encode(value: Any) -> Any:
        enc = _encoders.get(qualified)
        if enc is None:
            func_type = result_type[0]
            assert func_type is not None
            enc = _encoders[qualified] = encoder(func_type.result)
            result_type[0] = None
        return enc(value)

    def call(store: Any, *params: Any) -> Any:
        ctx = current()
        ctx.store = store
        try:
            return encode(impl(ctx, *params))
        except GuestTrap:
            raise
        except Exception as err:  # a bug on our side: trap this request, say where
            _trap_with_note(ctx, f"host error in {qualified}: {type(err).__name__}: {err}")
        finally:
            ctx.store = None

    return call


def _stub(qualified: str, refusal: str | None) -> Callable[..., Any]:
    why = refusal or "not supported by the local target (run the app on the cluster target)"

    def call(store: Any, *params: Any) -> Any:
        ctx = current()
        ctx.store = store
        for p in params:  # borrows must be released before returning, even when trapping
            _release(ctx, p)
        ctx.store = None
        _trap_with_note(ctx, f"unsupported import {qualified}: {why}")

    return call


def _release(ctx: HostContext, value: Any) -> None:
    from wasmtime.component import ResourceAny

    if isinstance(value, ResourceAny):
        try:
            assert ctx.store is not None
            if value.owned:
                value.drop(ctx.store)
            else:
                value.to_host(ctx.store)
        except wasmtime.WasmtimeError:
            pass


def _trap_with_note(ctx: HostContext, reason: str) -> None:
    if ctx.trap_reason is None:
        ctx.note(reason)
    ctx.trap(reason)
