"""devenv/component_world.py reads what a wasm binary imports and exports, without compiling it,
and says which Spin can run it."""

from __future__ import annotations

import pytest
import wasmtime

from devenv.component_world import NotWasm, WorldKind, parse_world, read_world, spin_serves
from devenv.targets.local.wasm_kind import WasmKind


def component(imports: list[str], export: str | None) -> bytes:
    text = "(component\n"
    text += "".join(f'  (import "{name}" (instance))\n' for name in imports)
    text += '  (import "f" (func $f))\n'
    text += "  (component $c)\n  (instance $i (instantiate $c))\n"
    if export:
        text += f'  (export "{export}" (instance $i))\n'
    text += '  (export "run-it" (func $f))\n)'
    return bytes(wasmtime.wat2wasm(text))


def test_a_wasi_http_0_2_component_needs_spin_2() -> None:
    world = parse_world(component(["wasi:http/types@0.2.0"], "wasi:http/incoming-handler@0.2.0"))
    assert world.binary is WasmKind.COMPONENT
    assert world.imports == ("wasi:http/types@0.2.0", "f")
    assert world.exports == ("wasi:http/incoming-handler@0.2.0", "run-it")
    assert world.kind is WorldKind.WASI_HTTP_0_2
    assert world.min_spin == (2, 0)
    assert spin_serves(world, (3, 6)) and spin_serves(world, (4, 0))
    assert not world.is_wasi_0_3


def test_the_0_3_rc_handler_needs_spin_4_0_and_the_final_one_spin_4_1() -> None:
    rc = parse_world(
        component(["wasi:http/types@0.3.0-rc-2026-03-15"], "wasi:http/handler@0.3.0-rc-2026-03-15")
    )
    assert rc.kind is WorldKind.WASI_HTTP_0_3_RC and rc.min_spin == (4, 0) and rc.is_wasi_0_3
    assert not spin_serves(rc, (3, 6)) and spin_serves(rc, (4, 0)) and spin_serves(rc, (4, 1))
    final = parse_world(component(["wasi:http/types@0.3.0"], "wasi:http/handler@0.3.0"))
    assert final.kind is WorldKind.WASI_HTTP_0_3 and final.min_spin == (4, 1)
    assert not spin_serves(final, (4, 0)) and spin_serves(final, (4, 1))


def test_a_wasi_0_3_import_raises_the_need_beside_an_older_export() -> None:
    world = parse_world(component(["wasi:cli/stdout@0.3.0"], "wasi:http/handler@0.3.0-rc-2026-03-15"))
    assert world.min_spin == (4, 1)


def test_commands_and_other_components() -> None:
    assert parse_world(component([], "wasi:cli/run@0.2.0")).kind is WorldKind.COMMAND_COMPONENT
    other = parse_world(component([], "spin:redis/inbound-redis@3.0.0"))
    assert other.kind is WorldKind.OTHER_COMPONENT and other.min_spin is None and other.http_export is None


def test_core_modules_with_and_without_start() -> None:
    wagi = parse_world(
        bytes(
            wasmtime.wat2wasm(
                '(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))'
                ' (memory (export "memory") 1) (func (export "_start")))'
            )
        )
    )
    assert wagi.binary is WasmKind.MODULE and wagi.kind is WorldKind.COMMAND_MODULE
    assert wagi.imports == ("wasi_snapshot_preview1#fd_write",)
    assert wagi.exports == ("memory", "_start")
    library = parse_world(bytes(wasmtime.wat2wasm('(module (func (export "add")))')))
    assert library.kind is WorldKind.CORE_MODULE


def test_not_wasm_and_truncated_binaries_are_refused() -> None:
    with pytest.raises(NotWasm):
        parse_world(b"#!/bin/sh\necho hi\n")
    whole = component(["wasi:http/types@0.2.0"], "wasi:http/incoming-handler@0.2.0")
    with pytest.raises(NotWasm):
        parse_world(whole[: len(whole) - 5])


@pytest.mark.slow
def test_reads_the_real_python_sample_component() -> None:
    from tests.targets.component_builds import sample_wasm

    world = read_world(sample_wasm("hello-py"))
    assert world.kind is WorldKind.WASI_HTTP_0_2
    assert world.http_export == "wasi:http/incoming-handler@0.2.0"
    assert any(name.startswith("wasi:http/types@0.2") for name in world.imports)


@pytest.mark.slow
def test_reads_a_real_spin_sdk_5_component_as_spin_4_1() -> None:
    from tests.targets.spin4_build import spin4_wasm

    world = read_world(spin4_wasm())
    # spin-sdk 5.0.0's HTTP world is spin:up/http-trigger@4.1.0: the final 0.3 handler, which
    # Spin 4.0.x (shim v0.25.1) does not serve.
    assert world.kind is WorldKind.WASI_HTTP_0_3
    assert world.http_export == "wasi:http/handler@0.3.0"
    assert world.min_spin == (4, 1)
    assert not spin_serves(world, (4, 0))
