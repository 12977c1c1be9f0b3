"""Cheaper host calls for wasmtime-py's component API: types read once, not on every call.

wasmtime-py 50 handles each call of a Python host function by rebuilding the function's type
from the C API (``FuncType._from_ptr``, ``params``, ``result``) and, to lower a result or lift a
variant, re-reading every case of every variant (wasi:http's ``error-code`` has 39) to decide how
values are tagged. Measured on hello-py: 23 host calls cost 2.8 ms of a 7.9 ms request.

Two changes, both for the pinned wasmtime (see ``runtime.SUPPORTED_WASMTIME``):
- ``memoize_types()``: the structural accessors of type objects (a list's element, a variant's
  cases, a result's ok/err, ``_tagged``, …) are cached on the object. A type object never
  changes, so this only matters for objects that live long, such as the ones below.
- ``add_func()``: defines a host function with its own C callback, which reads the function's
  type once (at the first call, from the type wasmtime passes) and keeps it, so later calls
  convert values without asking libwasmtime for types at all, and linking reads no types.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from ctypes import CFUNCTYPE, c_void_p
from importlib.metadata import version
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime._slab import Slab
from wasmtime.component import FuncType, LinkerInstance, ValType
from wasmtime.component import _types as types
from wasmtime.component._enter import catch_exceptions

from devenv.targets.local.runtime import SUPPORTED_WASMTIME

_MISSING = object()
_memoized = False


@functools.cache
def supported() -> bool:
    """Whether this wasmtime is the one these internals were checked against."""
    return version("wasmtime").startswith(SUPPORTED_WASMTIME)


def _cached_property(cls: type, name: str) -> None:
    fget = getattr(cls, name).fget
    slot = f"_wasmdev_{name}"

    def get(self: Any) -> Any:
        value = self.__dict__.get(slot, _MISSING)
        if value is _MISSING:
            value = self.__dict__[slot] = fget(self)
        return value

    setattr(cls, name, property(get))


def _cached_method(cls: type, name: str) -> None:
    method = getattr(cls, name)
    slot = f"_wasmdev_{name}"

    def call(self: Any) -> Any:
        value = self.__dict__.get(slot, _MISSING)
        if value is _MISSING:
            value = self.__dict__[slot] = method(self)
        return value

    setattr(cls, name, call)


def memoize_types() -> None:
    """Cache the structure of type objects on themselves (once per process)."""
    global _memoized
    if _memoized:
        return
    for cls, name in [
        (types.ListType, "element"),
        (types.RecordType, "fields"),
        (types.TupleType, "elements"),
        (types.VariantType, "cases"),
        (types.EnumType, "names"),
        (types.OptionType, "payload"),
        (types.ResultType, "ok"),
        (types.ResultType, "err"),
        (types.FlagsType, "names"),
        (types.FuncType, "params"),
        (types.FuncType, "result"),
    ]:
        _cached_property(cls, name)
    for cls in (types.VariantType, types.OptionType, types.ResultType):
        _cached_method(cls, "_tagged")
        _cached_method(cls, "_cases")
    _memoized = True


class _HostFunc:
    """One defined function: its Python body is made on the first call, from the function type
    wasmtime passes in (cloned and kept), so linking reads no types at all."""

    __slots__ = ("make", "func", "params", "result", "func_type")

    def __init__(self, make: Callable[[FuncType], Callable[..., Any]]) -> None:
        self.make = make
        self.func: Callable[..., Any] | None = None
        self.params: tuple[ValType, ...] = ()
        self.result: ValType | None = None
        self.func_type: FuncType | None = None  # owns the type objects above

    def bind(self, ty_raw: Any) -> Callable[..., Any]:
        func_type = FuncType._from_ptr(ffi.wasmtime_component_func_type_clone(ty_raw))
        self.params = tuple(t for _, t in func_type.params)
        self.result = func_type.result
        self.func_type = func_type
        self.func = self.make(func_type)
        return self.func


_FUNCS: Slab[_HostFunc] = Slab()


def add_func(instance: LinkerInstance, name: str, make: Callable[[FuncType], Callable[..., Any]]) -> None:
    """Define ``name`` with the body ``make(func_type)`` returns (``body(store, *params)``, as
    wasmtime-py's ``add_func`` takes); ``make`` runs once, at the first call. Refuses a wasmtime
    these internals were not checked against."""
    if not supported():
        from importlib.metadata import version as installed

        raise RuntimeError(
            f"wasmdev's component host is checked against wasmtime 50.x, found {installed('wasmtime')}: "
            "pip install 'wasmtime>=50,<51'"
        )
    memoize_types()
    name_bytes = name.encode("utf-8")
    idx = _FUNCS.allocate(_HostFunc(make))
    err = ffi.wasmtime_component_linker_instance_add_func(
        instance.ptr(), ctypes.create_string_buffer(name_bytes), len(name_bytes), _call, idx, _finalize
    )
    if err:
        from wasmtime import WasmtimeError

        raise WasmtimeError._from_ptr(err)


@ffi.wasmtime_component_func_callback_t
def _call(idx, context, ty_raw, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
    entry = _FUNCS.get(idx or 0)

    def run(store: Any) -> None:
        func = entry.func if entry.func is not None else entry.bind(ty_raw)
        values = [ty.convert_from_c(args[i]) for i, ty in enumerate(entry.params)]
        result = func(store, *values)
        if entry.result is not None:
            entry.result.convert_to_c(store, result, results)

    return catch_exceptions(context, run)


@CFUNCTYPE(None, c_void_p)
def _finalize(idx):  # type: ignore[no-untyped-def]
    if _FUNCS:
        _FUNCS.deallocate(idx or 0)
