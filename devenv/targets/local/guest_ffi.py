"""The per-request calls into libwasmtime that wasmtime-py's public API makes slow.

Measured on the WAGI hello (2-core VM): ``Func.__call__`` looks up the function type and builds
parameter arrays on every call; ``Instance.exports`` materialises every export; WASI's
``stdout_custom`` calls back into Python from a wasmtime worker thread on every write (~0.7 ms a
request). Going to the C API for these four things cuts a request from ~1.3 ms to ~0.3 ms.

This reaches into ``wasmtime._ffi``, which is not a public API: pyproject pins wasmtime to 50.x
and tests/targets/test_local_wagi.py exercises every function here.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime._error import WasmtimeError
from wasmtime._trap import Trap

# wasmtime-py declares these two with ``char**`` arguments, which forces a ctypes.cast per array;
# our own prototypes for the same symbols take plain pointers (~20 us a request saved).
_set_argv = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)(
    ("wasi_config_set_argv", ffi.dll)
)
_set_env = ctypes.CFUNCTYPE(
    ctypes.c_bool, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p
)(("wasi_config_set_env", ffi.dll))


def set_argv(wasi: wasmtime.WasiConfig, argv: Sequence[bytes]) -> None:
    if not _set_argv(wasi.ptr(), len(argv), (ctypes.c_char_p * len(argv))(*argv)):
        raise WasmtimeError("failed to configure argv")


def set_env(wasi: wasmtime.WasiConfig, names: Sequence[bytes], values: Sequence[bytes]) -> None:
    array = ctypes.c_char_p * len(names)
    if not _set_env(wasi.ptr(), len(names), array(*names), array(*values)):
        raise WasmtimeError("failed to configure the environment")


def set_stdio_files(wasi: wasmtime.WasiConfig, stdin: bytes | None, stdout: bytes, stderr: bytes) -> None:
    """Point the guest's stdio at host paths (stdin None: the guest reads EOF)."""
    if stdin is not None and not ffi.wasi_config_set_stdin_file(wasi.ptr(), stdin):
        raise WasmtimeError("failed to open the request body for the guest's stdin")
    if not ffi.wasi_config_set_stdout_file(wasi.ptr(), stdout):
        raise WasmtimeError("failed to open the guest's stdout")
    if not ffi.wasi_config_set_stderr_file(wasi.ptr(), stderr):
        raise WasmtimeError("failed to open the guest's stderr")


def export(store: wasmtime.Store, instance: wasmtime.Instance, name: bytes) -> ffi.wasmtime_extern_t | None:
    item = ffi.wasmtime_extern_t()
    found = ffi.wasmtime_instance_export_get(
        store._context(), ctypes.byref(instance._instance), name, len(name), ctypes.byref(item)
    )
    return item if found else None


def is_func(item: ffi.wasmtime_extern_t) -> bool:
    return item.kind == ffi.WASMTIME_EXTERN_FUNC.value


def is_memory(item: ffi.wasmtime_extern_t) -> bool:
    return item.kind == ffi.WASMTIME_EXTERN_MEMORY.value


def call_nullary(store: wasmtime.Store, func: ffi.wasmtime_extern_t) -> None:
    """Call a ``() -> ()`` export. Raises wasmtime's own ``Trap`` / ``ExitTrap`` / ``WasmtimeError``."""
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    error = ffi.wasmtime_func_call(
        store._context(), ctypes.byref(func.of.func), None, 0, None, 0, ctypes.byref(trap)
    )
    if error:
        raise WasmtimeError._from_ptr(error)
    if trap:
        raise Trap._from_ptr(trap)


def memory_size(store: wasmtime.Store, memory: ffi.wasmtime_extern_t) -> int:
    return int(ffi.wasmtime_memory_data_size(store._context(), ctypes.byref(memory.of.memory)))
