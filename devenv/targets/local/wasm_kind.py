"""Tell a core module from a component by the binary header, without compiling anything.

Both start with "\\0asm"; then a 16-bit version and a 16-bit layer: layer 0 is a core module
(version 1), layer 1 a component (version 0xd during the component model's pre-1.0 encoding).
"""

from __future__ import annotations

from enum import StrEnum

MAGIC = b"\0asm"


class WasmKind(StrEnum):
    MODULE = "module"
    COMPONENT = "component"


def wasm_kind(header: bytes) -> WasmKind | None:
    """The kind of the wasm binary that starts with ``header`` (8+ bytes); None if it is not wasm."""
    if len(header) < 8 or header[:4] != MAGIC:
        return None
    layer = int.from_bytes(header[6:8], "little")
    if layer == 0:
        return WasmKind.MODULE
    if layer == 1:
        return WasmKind.COMPONENT
    return None
