"""A minimal WAGI app in WAT, written into a temp dir, built by a real subprocess (wat2wasm).

The build command is a real shell command run by the real Builder; the module it writes prints
a CGI response whose body is the greeting in ``app.wat``, so a test can see which build serves.
"""

from __future__ import annotations

from pathlib import Path

WAT_TEMPLATE = """\
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "Content-Type: text/plain\\n\\n{body}\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const {length}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))))
"""

BUILD_PY = """\
import pathlib, sys, wasmtime
src = pathlib.Path("app.wat").read_text()
try:
    wasm = wasmtime.wat2wasm(src)
except Exception as err:
    print(f"app.wat: {err}", file=sys.stderr)
    sys.exit(2)
pathlib.Path("target").mkdir(exist_ok=True)
pathlib.Path("target/app.wasm").write_bytes(wasm)
print(f"wrote target/app.wasm ({len(wasm)} bytes)")
"""

MANIFEST = """\
spin_manifest_version = 2

[application]
name = "{name}"

[[trigger.http]]
route = "/{name}/..."
component = "{name}"
executor = {{ type = "wagi" }}

[component.{name}]
source = "target/app.wasm"

[component.{name}.build]
command = "python build.py{extra}"
watch = ["*.wat"]
"""


def wat_source(body: str) -> str:
    header = "Content-Type: text/plain\n\n"
    return WAT_TEMPLATE.format(body=body, length=len((header + body + "\n").encode()))


def write_wat_app(root: Path, name: str = "watapp", body: str = "hello v1", extra_command: str = "") -> Path:
    """Create the app under root/name; returns its spin.toml."""
    app = root / name
    app.mkdir(parents=True, exist_ok=True)
    (app / "app.wat").write_text(wat_source(body))
    (app / "build.py").write_text(BUILD_PY)
    manifest = app / "spin.toml"
    manifest.write_text(MANIFEST.format(name=name, extra=extra_command))
    return manifest


def set_body(manifest: Path, body: str) -> None:
    (manifest.parent / "app.wat").write_text(wat_source(body))


def break_source(manifest: Path) -> None:
    (manifest.parent / "app.wat").write_text("(module (func $oops (unknown_instruction)))\n")
