"""Build hello.wasm from hello.wat with wasmtime's own WAT parser (no toolchain needed).

Run by `wasmdev` as this app's build command: `python build.py` in this folder.
"""

import sys
from pathlib import Path

import wasmtime

here = Path(__file__).resolve().parent
source = here / "hello.wat"
target = here / "hello.wasm"
try:
    wasm = wasmtime.wat2wasm(source.read_text())
except wasmtime.WasmtimeError as err:
    sys.exit(f"{source}: {err}")
# Write next to the final name and rename, so a watcher never sees half a module.
partial = target.with_suffix(".wasm.partial")
partial.write_bytes(wasm)
partial.replace(target)
print(f"built {target.name} ({len(wasm)} bytes)")
