"""Whole-buffer ``list<u8>`` transfer for wasmtime-py's component API.

wasmtime-py 50 lowers and lifts a ``list<u8>`` one element at a time through Python
(``ListType.convert_to_c`` / ``convert_from_c``): about 4 µs per byte, so a 64 KiB body costs a
quarter of a second. The C API represents the list as an array of 32-byte
``wasmtime_component_val_t`` slots (a one-byte kind tag, then the value at offset 8), so a byte
list can be filled or read with two strided memoryview copies instead: milliseconds per MiB.

This patches those two methods for byte lists only; every other list keeps the library's code.
The patch depends on the C struct layout, so it is applied only to the wasmtime release it was
checked against (``SUPPORTED_WASMTIME``) and verifies the layout at install time; on any other
version the library's slow path stays and ``install()`` returns False.
"""

from __future__ import annotations

import ctypes
from importlib.metadata import version
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime.component import _types

from devenv.targets.local.runtime import SUPPORTED_WASMTIME

_VAL = ffi.wasmtime_component_val
_SLOT = ctypes.sizeof(_VAL)
_KIND_AT = _VAL.kind.offset
_VALUE_AT = _VAL.of.offset
_U8 = ffi.WASMTIME_COMPONENT_U8.value
_LIST = ffi.WASMTIME_COMPONENT_LIST

_original_to_c = _types.ListType.convert_to_c
_original_from_c = _types.ListType.convert_from_c
_installed = False


def _is_byte_list(list_type: _types.ListType) -> bool:
    # Cached per type object: ``element`` allocates a fresh type handle on every access.
    cached = getattr(list_type, "_wasmdev_is_bytes", None)
    if cached is None:
        cached = isinstance(list_type.element, _types.U8)
        list_type._wasmdev_is_bytes = cached  # type: ignore[attr-defined]
    return cached


def _slots(address: int, count: int) -> memoryview:
    return memoryview((ctypes.c_ubyte * (count * _SLOT)).from_address(address)).cast("B")


def _bytes_to_c(self: _types.ListType, store: Any, val: Any, ptr: Any) -> None:
    if not _is_byte_list(self):
        return _original_to_c(self, store, val, ptr)
    if not isinstance(val, (bytes, bytearray, memoryview)):
        raise TypeError("expected bytes value")
    data = memoryview(val).cast("B")
    raw = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(raw, len(data))
    if len(data):
        slots = _slots(ctypes.addressof(raw.data.contents), len(data))
        slots[_KIND_AT::_SLOT] = bytes([_U8]) * len(data)
        slots[_VALUE_AT::_SLOT] = data
    ptr.contents.kind = _LIST
    ptr.contents.of.list = raw
    return None


def _bytes_from_c(self: _types.ListType, c: Any) -> Any:
    if not _is_byte_list(self):
        return _original_from_c(self, c)
    assert c.kind == _LIST.value
    size = c.of.list.size
    try:
        if size == 0:
            return b""
        return _slots(ctypes.addressof(c.of.list.data.contents), size)[_VALUE_AT::_SLOT].tobytes()
    finally:
        # u8 slots own nothing, so the array can be freed as is.
        ffi.wasmtime_component_vallist_delete(ctypes.byref(c.of.list))


def _layout_is_as_expected() -> bool:
    return _SLOT == 32 and _KIND_AT == 0 and _VALUE_AT == 8 and ctypes.sizeof(ctypes.c_void_p) == 8


def install() -> bool:
    """Patch byte-list conversion once per process. Returns whether the fast path is active."""
    global _installed
    if _installed:
        return True
    if not version("wasmtime").startswith(SUPPORTED_WASMTIME) or not _layout_is_as_expected():
        return False
    _types.ListType.convert_to_c = _bytes_to_c  # type: ignore[method-assign]
    _types.ListType.convert_from_c = _bytes_from_c  # type: ignore[method-assign]
    _installed = True
    return True
