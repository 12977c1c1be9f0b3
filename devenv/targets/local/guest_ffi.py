"""One WAGI request's store, instance and call, driven through libwasmtime's C API directly.

Why not wasmtime-py's classes: measured on the WAGI hello (2-core VM), they spend more time in
Python than the guest runs. ``Func.__call__`` fetches the function type and builds parameter
arrays each call, ``Instance.exports`` materialises every export, WASI's ``stdout_custom`` calls
back into Python from a wasmtime thread on every write (~0.7 ms a request), and every ctypes call
releases and re-takes the GIL, which under load means waiting for the event loop thread ~20
times a request. Here the quick calls (configuring WASI, creating the store, looking up exports)
keep the GIL (``PYFUNCTYPE``); only the three that can take long release it: instantiating,
running the guest, and tearing the store down.

This uses ``wasmtime._ffi`` (the library handle and C struct layouts), which is not a public
API: pyproject pins wasmtime to 50.x and the local target's tests exercise every path here.
Errors come back as wasmtime-py's own ``WasmtimeError`` / ``ExitTrap`` / ``Trap`` objects.
"""

from __future__ import annotations

import ctypes
import platform
from array import array
from collections.abc import Sequence

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime._error import WasmtimeError
from wasmtime._trap import Trap

from devenv.targets.local.guest_watch import GuestWatch, unwatch, watch_store

_V = ctypes.c_void_p
_TrapOut = ctypes.POINTER(ctypes.POINTER(ffi.wasm_trap_t))
_InstanceP = ctypes.POINTER(ffi.wasmtime_instance_t)
_ExternP = ctypes.POINTER(ffi.wasmtime_extern_t)


def _quick(name: str, restype: object, *argtypes: object) -> ctypes._CFuncPtr:
    """A binding that keeps the GIL: for calls that take microseconds."""
    return ctypes.PYFUNCTYPE(restype, *argtypes)((name, ffi.dll))


def _slow(name: str, restype: object, *argtypes: object) -> ctypes._CFuncPtr:
    """A binding that releases the GIL: for calls that may run guest code or free a lot."""
    return ctypes.CFUNCTYPE(restype, *argtypes)((name, ffi.dll))


_config_new = _quick("wasi_config_new", _V)
_config_delete = _quick("wasi_config_delete", None, _V)
_set_argv = _quick("wasi_config_set_argv", ctypes.c_bool, _V, ctypes.c_size_t, _V)
_set_env = _quick("wasi_config_set_env", ctypes.c_bool, _V, ctypes.c_size_t, _V, _V)
_set_stdin = _quick("wasi_config_set_stdin_file", ctypes.c_bool, _V, ctypes.c_char_p)
_set_stdout = _quick("wasi_config_set_stdout_file", ctypes.c_bool, _V, ctypes.c_char_p)
_set_stderr = _quick("wasi_config_set_stderr_file", ctypes.c_bool, _V, ctypes.c_char_p)
_preopen = _quick(
    "wasi_config_preopen_dir", ctypes.c_bool, _V, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool
)
_store_new = _quick("wasmtime_store_new", _V, _V, _V, _V)
_store_context = _quick("wasmtime_store_context", _V, _V)
_store_limiter = _quick(
    "wasmtime_store_limiter",
    None,
    _V,
    ctypes.c_int64,
    ctypes.c_int64,
    ctypes.c_int64,
    ctypes.c_int64,
    ctypes.c_int64,
)
_set_wasi = _quick("wasmtime_context_set_wasi", _V, _V, _V)
_set_epoch_deadline = _quick("wasmtime_context_set_epoch_deadline", None, _V, ctypes.c_uint64)
_export_get = _quick(
    "wasmtime_instance_export_get", ctypes.c_bool, _V, _InstanceP, ctypes.c_char_p, ctypes.c_size_t, _ExternP
)
_memory_size = _quick("wasmtime_memory_data_size", ctypes.c_size_t, _V, ctypes.POINTER(ffi.wasmtime_memory_t))
_instantiate = _slow("wasmtime_instance_pre_instantiate", _V, _V, _V, _InstanceP, _TrapOut)
_func_call = _slow(
    "wasmtime_func_call",
    _V,
    _V,
    ctypes.POINTER(ffi.wasmtime_func_t),
    _V,
    ctypes.c_size_t,
    _V,
    ctypes.c_size_t,
    _TrapOut,
)
_store_delete = _slow("wasmtime_store_delete", None, _V)

_FUNC = ffi.WASMTIME_EXTERN_FUNC.value
_MEMORY = ffi.WASMTIME_EXTERN_MEMORY.value


def _raise(error: int | None, trap: ctypes._Pointer | None) -> None:
    if error:
        raise WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))
    if trap:
        raise Trap._from_ptr(trap)


# CPython keeps a bytes object's data, NUL-terminated, at a fixed offset from its address: an
# array of those addresses is the ``char **`` the C API wants, built ~3x faster than a
# ``c_char_p`` array (which converts item by item; ~10 us for a request's ~27 CGI variables).
_BYTES_DATA = bytes.__basicsize__ - 1 if platform.python_implementation() == "CPython" else None
_POINTER_CODE = next((c for c in "LQ" if array(c).itemsize == ctypes.sizeof(ctypes.c_void_p)), None)


def _char_pointers(items: Sequence[bytes]) -> tuple[object, object]:
    """``(array of char*, what must stay alive during the call)``; the items must stay alive too."""
    if _BYTES_DATA is not None and _POINTER_CODE is not None and all(type(i) is bytes for i in items):
        pointers = array(_POINTER_CODE, [id(i) + _BYTES_DATA for i in items])
        return pointers.buffer_info()[0], pointers
    fallback = (ctypes.c_char_p * len(items))(*items)
    return fallback, fallback


class WasiSetup:
    """What the guest's WASI context will hold; handed to a ``GuestStore``, which then owns it."""

    def __init__(self) -> None:
        self.ptr: int | None = _config_new()

    def argv(self, argv: Sequence[bytes]) -> None:
        pointers, _alive = _char_pointers(argv)
        if not _set_argv(self.ptr, len(argv), pointers):
            raise WasmtimeError("failed to configure argv")

    def env(self, names: Sequence[bytes], values: Sequence[bytes]) -> None:
        if len(names) != len(values):
            raise ValueError("env: names and values differ in length")
        name_pointers, _names_alive = _char_pointers(names)
        value_pointers, _values_alive = _char_pointers(values)
        if not _set_env(self.ptr, len(names), name_pointers, value_pointers):
            raise WasmtimeError("failed to configure the environment")

    def stdio(self, stdin: bytes | None, stdout: bytes, stderr: bytes) -> None:
        """Point the guest's stdio at host paths (stdin None: the guest reads EOF)."""
        if stdin is not None and not _set_stdin(self.ptr, stdin):
            raise WasmtimeError("failed to open the request body for the guest's stdin")
        if not _set_stdout(self.ptr, stdout):
            raise WasmtimeError("failed to open the guest's stdout")
        if not _set_stderr(self.ptr, stderr):
            raise WasmtimeError("failed to open the guest's stderr")

    def preopen_read_only(self, host_dir: str, guest_dir: str) -> None:
        if not _preopen(self.ptr, host_dir.encode(), guest_dir.encode(), False):
            raise WasmtimeError(f"failed to grant {host_dir} at {guest_dir}")

    def discard(self) -> None:
        if self.ptr is not None:
            _config_delete(self.ptr)
            self.ptr = None


class GuestStore:
    """A store for one request: WASI, a deadline in epoch ticks and a memory cap. ``close()`` it."""

    def __init__(
        self,
        engine: wasmtime.Engine,
        wasi: WasiSetup,
        deadline_ticks: int,
        memory_bytes: int,
        watch: GuestWatch | None = None,
    ) -> None:
        """``watch``: check the request's limits every few ticks (guest_watch.py) rather than
        trap at ``deadline_ticks``, so the guest can be stopped early."""
        self._store: int | None = _store_new(ctypes.cast(engine.ptr(), _V), None, None)
        self._ctx = _store_context(self._store)
        config, wasi.ptr = wasi.ptr, None  # the store owns it from here, even on error
        _raise(_set_wasi(self._ctx, config), None)
        self._watch_key = 0
        if watch is not None:
            self._watch_key = watch_store(self._store, watch)
            deadline_ticks = watch.first_ticks()
        _set_epoch_deadline(self._ctx, deadline_ticks)
        _store_limiter(self._store, memory_bytes, -1, -1, -1, -1)
        self._instance = ffi.wasmtime_instance_t()
        self._item = ffi.wasmtime_extern_t()
        self._instantiated = False  # the instance struct is meaningless until then

    def instantiate(self, pre: wasmtime.InstancePre) -> None:
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = _instantiate(
            ctypes.cast(pre.ptr(), _V), self._ctx, ctypes.byref(self._instance), ctypes.byref(trap)
        )
        _raise(error, trap)
        self._instantiated = True

    def call_export(self, name: bytes) -> bool:
        """Call the exported ``() -> ()`` function ``name``; False if there is none."""
        item = self._item
        if not _export_get(self._ctx, ctypes.byref(self._instance), name, len(name), ctypes.byref(item)):
            return False
        if item.kind != _FUNC:
            return False
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = _func_call(self._ctx, ctypes.byref(item.of.func), None, 0, None, 0, ctypes.byref(trap))
        _raise(error, trap)
        return True

    def memory_size(self, name: bytes = b"memory") -> int:
        """Bytes of the exported linear memory (0 if none). Memory only grows: this is its high-water mark."""
        if not self._instantiated or self._store is None:
            return 0
        item = ffi.wasmtime_extern_t()
        if not _export_get(self._ctx, ctypes.byref(self._instance), name, len(name), ctypes.byref(item)):
            return 0
        if item.kind != _MEMORY:
            return 0
        return int(_memory_size(self._ctx, ctypes.byref(item.of.memory)))

    def close(self) -> None:
        """Free the store; this also closes wasmtime's handles on the guest's stdio files."""
        if self._store is not None:
            store, self._store = self._store, None
            _store_delete(store)
            if self._watch_key:
                unwatch(self._watch_key)

    def __del__(self) -> None:
        self.close()
