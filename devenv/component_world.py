"""What a wasm binary needs from its host, read from its import and export names alone.

A component's world decides which Spin can run it: Spin 2 and 3 serve HTTP components that export
``wasi:http/incoming-handler@0.2.x``; Spin 4.0 also serves ``wasi:http/handler@0.3.0-rc-2026-03-15``
and Spin 4.1 any ``wasi:http/handler@0.3.*`` (spin@v4.0.1 and main:crates/http/src/trigger.rs).
Knowing this before a deploy lets wasmdev refuse with the fix instead of a crash-looping pod or a
minutes-long compile that ends in a link error.

The names come from the binary's top-level import and export sections; every other section
(the embedded core modules, which are most of an 18 MB componentize-py build) is skipped by its
length, so reading a component costs one pass over a few hundred section headers and never
compiles anything. The layouts parsed here are the component model's binary format
(WebAssembly/component-model: design/mvp/Binary.md) and the core module format (WebAssembly
spec, "Binary Format → Modules").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from devenv.targets.local.wasm_kind import WasmKind, wasm_kind

# Component section ids (Binary.md, "Component Definitions").
_COMPONENT_IMPORT_SECTION = 10
_COMPONENT_EXPORT_SECTION = 11
# Core module section ids.
_CORE_IMPORT_SECTION = 2
_CORE_EXPORT_SECTION = 7

WASI_HTTP_0_2_EXPORT = "wasi:http/incoming-handler@0.2"
WASI_0_3_RC = "0.3.0-rc-2026-03-15"  # the WASI 0.3 draft Spin 4.0.x was built against
WASI_HTTP_0_3_RC_EXPORT = f"wasi:http/handler@{WASI_0_3_RC}"  # what Spin 4.0.x serves
WASI_HTTP_0_3_EXPORT = "wasi:http/handler@0.3"  # any 0.3: Spin 4.1 and later
SPIN_INBOUND_HTTP_EXPORT = "fermyon:spin/inbound-http"  # Spin 1's own HTTP interface
WASI_CLI_RUN_EXPORT = "wasi:cli/run@"


class WorldKind(StrEnum):
    """What a binary is, as far as which host can run it."""

    WASI_HTTP_0_2 = "wasi:http 0.2 component"  # Spin 2/3 (and 4) HTTP apps
    WASI_HTTP_0_3_RC = "wasi:http 0.3.0-rc-2026-03-15 component"  # Spin 4.0 HTTP apps
    WASI_HTTP_0_3 = "wasi:http 0.3 component"  # Spin 4.1 HTTP apps
    SPIN_INBOUND_HTTP = "fermyon:spin/inbound-http component"
    COMMAND_COMPONENT = "wasi:cli command component"
    OTHER_COMPONENT = "component"  # another trigger's world (redis, …) or a library
    COMMAND_MODULE = "core module with _start"  # WAGI
    CORE_MODULE = "core module"


# The oldest Spin (major, minor) that runs each kind; None: Spin has no such requirement here.
_MIN_SPIN: dict[WorldKind, tuple[int, int]] = {
    WorldKind.WASI_HTTP_0_2: (2, 0),
    WorldKind.WASI_HTTP_0_3_RC: (4, 0),
    WorldKind.WASI_HTTP_0_3: (4, 1),
}


class NotWasm(ValueError):
    """The bytes are not a wasm module or component, or are cut short."""


@dataclass(frozen=True)
class ComponentWorld:
    """The top-level import and export names of one wasm binary, and what they make it."""

    binary: WasmKind
    imports: tuple[str, ...]
    exports: tuple[str, ...]

    @property
    def kind(self) -> WorldKind:
        if self.binary is WasmKind.MODULE:
            return WorldKind.COMMAND_MODULE if "_start" in self.exports else WorldKind.CORE_MODULE
        exported = self.exports
        # The rc name is checked first: it also starts with the 0.3 prefix.
        if WASI_HTTP_0_3_RC_EXPORT in exported:
            return WorldKind.WASI_HTTP_0_3_RC
        if any(name.startswith(WASI_HTTP_0_3_EXPORT) for name in exported):
            return WorldKind.WASI_HTTP_0_3
        if any(name.startswith(WASI_HTTP_0_2_EXPORT) for name in exported):
            return WorldKind.WASI_HTTP_0_2
        if any(name.startswith(SPIN_INBOUND_HTTP_EXPORT) for name in exported):
            return WorldKind.SPIN_INBOUND_HTTP
        if any(name.startswith(WASI_CLI_RUN_EXPORT) for name in exported):
            return WorldKind.COMMAND_COMPONENT
        return WorldKind.OTHER_COMPONENT

    @property
    def http_export(self) -> str | None:
        """The HTTP handler interface this binary exports, as named in the binary."""
        for name in self.exports:
            if name.startswith(("wasi:http/", SPIN_INBOUND_HTTP_EXPORT)):
                return name
        return None

    @property
    def min_spin(self) -> tuple[int, int] | None:
        """The oldest Spin (major, minor) that can run this binary, from its HTTP export and its
        WASI 0.3 imports (a 0.3.0 import needs Spin 4.1 even beside an rc export); None when
        nothing in its names asks for a particular Spin."""
        needs = [_MIN_SPIN[self.kind]] if self.kind in _MIN_SPIN else []
        for name in self.imports:
            if not name.startswith("wasi:"):
                continue
            version = name.rpartition("@")[2]
            if version == WASI_0_3_RC:
                needs.append((4, 0))
            elif version.startswith("0.3"):
                needs.append((4, 1))
        return max(needs) if needs else None

    @property
    def is_wasi_0_3(self) -> bool:
        return self.kind in (WorldKind.WASI_HTTP_0_3_RC, WorldKind.WASI_HTTP_0_3) or any(
            "@0.3" in name for name in self.imports if name.startswith("wasi:")
        )


def spin_serves(world: ComponentWorld, spin_version: tuple[int, int]) -> bool:
    """Whether a Spin of this (major, minor) has what the binary's names ask for.

    Spin 4.0 serves only the 0.3 rc it was built against; 4.1 serves any 0.3 name and the rc.
    """
    need = world.min_spin
    return need is None or spin_version >= need


def read_world(path: Path) -> ComponentWorld:
    """The imports and exports of the wasm file at ``path``. Raises NotWasm if it is not wasm."""
    return parse_world(path.read_bytes())


def parse_world(data: bytes) -> ComponentWorld:
    kind = wasm_kind(data[:8])
    if kind is None:
        raise NotWasm("not a wasm binary (no \\0asm header with a known layer)")
    reader = _Reader(data, 8)
    imports: list[str] = []
    exports: list[str] = []
    component = kind is WasmKind.COMPONENT
    import_id = _COMPONENT_IMPORT_SECTION if component else _CORE_IMPORT_SECTION
    export_id = _COMPONENT_EXPORT_SECTION if component else _CORE_EXPORT_SECTION
    while not reader.at_end():
        section_id = reader.byte()
        size = reader.u32()
        end = reader.pos + size
        if end > len(data):
            raise NotWasm(f"section {section_id} runs past the end of the file (truncated binary?)")
        if section_id == import_id:
            section = _Reader(data, reader.pos, end)
            read = _component_import if component else _core_import
            imports += [read(section) for _ in range(section.u32())]
        elif section_id == export_id:
            section = _Reader(data, reader.pos, end)
            read = _component_export if component else _core_export
            exports += [read(section) for _ in range(section.u32())]
        reader.pos = end
    return ComponentWorld(binary=kind, imports=tuple(imports), exports=tuple(exports))


# --- the binary format -------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes, pos: int, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def at_end(self) -> bool:
        return self.pos >= self.end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise NotWasm("unexpected end of a section")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u32(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise NotWasm("malformed LEB128 integer")

    def s33(self) -> None:
        # A valtype is a primitive type byte or a type index, both as one signed LEB; only skipped.
        while self.byte() & 0x80:
            pass

    def name(self) -> str:
        size = self.u32()
        if self.pos + size > self.end:
            raise NotWasm("a name runs past the end of its section")
        text = self.data[self.pos : self.pos + size].decode("utf-8", errors="replace")
        self.pos += size
        return text


def _extern_name(r: _Reader) -> str:
    # importname'/exportname' ::= 0x00 len name | 0x01 len name vs:<versionsuffix> (an older form)
    form = r.byte()
    name = r.name()
    if form == 0x01:
        r.name()  # a version suffix, already part of the name in current encodings
    elif form != 0x00:
        raise NotWasm(f"unknown import/export name form 0x{form:02x}")
    return name


def _externdesc(r: _Reader) -> None:
    tag = r.byte()
    if tag == 0x00:  # core module: 0x00 0x11 typeidx
        r.byte()
        r.u32()
    elif tag in (0x01, 0x04, 0x05):  # func, component, instance: typeidx
        r.u32()
    elif tag == 0x02:  # value: 0x00 valueidx | 0x01 valtype
        if r.byte() == 0x00:
            r.u32()
        else:
            r.s33()
    elif tag == 0x03:  # type: 0x00 typeidx (eq) | 0x01 (sub resource)
        if r.byte() == 0x00:
            r.u32()
    else:
        raise NotWasm(f"unknown extern descriptor 0x{tag:02x}")


def _component_import(r: _Reader) -> str:
    name = _extern_name(r)
    _externdesc(r)
    return name


def _component_export(r: _Reader) -> str:
    name = _extern_name(r)
    if r.byte() == 0x00:  # sort: core sorts carry a second byte
        r.byte()
    r.u32()  # the index
    if r.byte() == 0x01:  # an optional type ascription
        _externdesc(r)
    return name


def _core_import(r: _Reader) -> str:
    module = r.name()
    field = r.name()
    tag = r.byte()
    if tag == 0x00:  # func: typeidx
        r.u32()
    elif tag == 0x01:  # table: reftype + limits
        r.byte()
        _core_limits(r)
    elif tag == 0x02:  # memory: limits
        _core_limits(r)
    elif tag == 0x03:  # global: valtype + mut
        r.byte()
        r.byte()
    elif tag == 0x04:  # tag: attribute + typeidx
        r.byte()
        r.u32()
    else:
        raise NotWasm(f"unknown core import kind 0x{tag:02x}")
    return f"{module}#{field}"


def _core_limits(r: _Reader) -> None:
    flags = r.byte()
    r.u32()
    if flags & 0x01:
        r.u32()


def _core_export(r: _Reader) -> str:
    name = r.name()
    r.byte()
    r.u32()
    return name
