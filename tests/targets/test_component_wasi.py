"""The component host's pieces that need no sample build: world recognition on tiny WAT
components, the outbound host patterns, and the whole-buffer list<u8> patch."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
import wasmtime
from wasmtime import _ffi as ffi
from wasmtime.component import Component, FuncType, ListType

from devenv.model import ComponentSpec
from devenv.targets.base import UnsupportedApp
from devenv.targets.local.compile_cache import CompileCache
from devenv.targets.local.component_host import build_runner
from devenv.targets.local.executor import RequestLimits
from devenv.targets.local.runtime import WasmRuntime
from devenv.targets.local.wasi import fastbytes
from devenv.targets.local.wasi.outgoing import allowed


def _component_exporting(name: str, import_: str = "") -> bytes:
    imports = f'(import "{import_}" (instance))' if import_ else ""
    return bytes(
        wasmtime.wat2wasm(
            f"""(component
                 {imports}
                 (core module $m (func (export "f")))
                 (core instance $i (instantiate $m))
                 (func $f (canon lift (core func $i "f")))
                 (instance $h (export "handle" (func $f)))
                 (export "{name}" (instance $h)))"""
        )
    )


@pytest.fixture(scope="module")
def runtime() -> WasmRuntime:
    rt = WasmRuntime()
    yield rt
    rt.close()


def _build(runtime: WasmRuntime, tmp_path: Path, wasm: bytes):
    path = tmp_path / "c.wasm"
    path.write_bytes(wasm)
    cache = CompileCache(tmp_path / "cache", runtime.config_key)
    spec = ComponentSpec(id="c", source=path)
    return build_runner(component=spec, wasm_path=path, runtime=runtime, cache=cache, limits=RequestLimits())


@pytest.mark.parametrize(
    ("export", "import_", "expected"),
    [
        ("wasi:http/handler@0.3.0-rc-2026-03-15", "", "needs the cluster target / a Spin 4 runtime"),
        ("wasi:http/incoming-handler@0.2.0-rc-2023-10-18", "", "release candidate"),
        ("wasi:cli/run@0.2.0", "", "wasi:cli command"),
        ("my:thing/other@1.0.0", "", "exports no wasi:http/incoming-handler@0.2.x"),
        ("my:thing/other@1.0.0", "spin:up/http-trigger@4.1.0", "needs the cluster target / a Spin 4 runtime"),
    ],
)
def test_worlds_it_cannot_host_are_reported_not_crashed_on(
    runtime: WasmRuntime, tmp_path: Path, export: str, import_: str, expected: str
) -> None:
    try:
        wasm = _component_exporting(export, import_)
    except wasmtime.WasmtimeError:
        pytest.skip("this wat2wasm cannot encode the test component")
    with pytest.raises(UnsupportedApp) as info:
        _build(runtime, tmp_path, wasm)
    assert expected in str(info.value)


def test_a_core_module_is_refused_with_a_reason(runtime: WasmRuntime, tmp_path: Path) -> None:
    wasm = bytes(wasmtime.wat2wasm('(module (func (export "_start")))'))
    with pytest.raises(UnsupportedApp) as info:
        _build(runtime, tmp_path, wasm)
    assert "not a component" in str(info.value)


@pytest.mark.parametrize(
    ("patterns", "url", "ok"),
    [
        (("https://example.com",), ("https", "example.com", 443), True),
        (("https://example.com",), ("http", "example.com", 80), False),
        (("https://example.com",), ("https", "example.com", 8443), False),
        (("http://127.0.0.1:*",), ("http", "127.0.0.1", 5555), True),
        (("http://127.0.0.1:*",), ("http", "localhost", 5555), False),
        (("https://*.example.com",), ("https", "api.example.com", 443), True),
        (("https://*.example.com",), ("https", "example.org", 443), False),
        (("*://*:*",), ("http", "anything", 1), True),
        (("http://localhost:3000",), ("http", "localhost", 3000), True),
        (("http://localhost:3000",), ("http", "localhost", 3001), False),
        ((), ("https", "example.com", 443), False),
        (("{{ host }}",), ("https", "example.com", 443), False),
        # IPv6 literals: bracketed in the pattern, bare as urlsplit().hostname gives the request's
        (("http://[::1]:8080",), ("http", "::1", 8080), True),
        (("http://[::1]:8080/",), ("http", "::1", 8080), True),
        (("http://[::1]:8080",), ("http", "::1", 8081), False),
        (("http://[::1]:8080",), ("http", "::2", 8080), False),
        (("http://[::1]:8080",), ("http", "127.0.0.1", 8080), False),
        (("http://[::1]",), ("http", "::1", 80), True),
        (("http://[::1]",), ("http", "::1", 8080), False),
        (("http://[::1]:*",), ("http", "::1", 5555), True),
        (("*://[2001:DB8::1]:443",), ("https", "2001:db8:0::1", 443), True),  # compared as addresses
        # no port (None) is the scheme's default; an explicit port 0 is only ever port 0
        (("https://example.com",), ("https", "example.com", None), True),
        (("https://example.com",), ("https", "example.com", 0), False),
        (("http://example.com:0",), ("http", "example.com", None), False),
        (("http://example.com:0",), ("http", "example.com", 80), False),
        (("http://example.com:0",), ("http", "example.com", 0), True),
        (("*://example.com:*",), ("ftp", "example.com", None), True),
        (("*://example.com",), ("ftp", "example.com", None), False),  # no default port for ftp
        # port ranges (end excluded, a Rust Range) and CIDR networks, which the manifest accepts
        (("http://localhost:8000..9000",), ("http", "localhost", 8000), True),
        (("http://localhost:8000..9000",), ("http", "localhost", 8999), True),
        (("http://localhost:8000..9000",), ("http", "localhost", 9000), False),
        (("http://localhost:8000..9000",), ("http", "localhost", None), False),
        (("http://10.0.0.0/8",), ("http", "10.1.2.3", None), True),
        (("http://10.0.0.0/8",), ("http", "11.0.0.1", None), False),
        (("http://10.0.0.0/8",), ("http", "10.1.2.3", 8080), False),
        (("http://10.0.0.0/8",), ("http", "ten.example", None), False),
        (("*://127.0.0.1/24:63551",), ("tcp", "127.0.0.9", 63551), True),  # Spin's test_cidr
        (("http://2001:db8::/32",), ("http", "2001:db8:abcd::1", None), True),
        (("http://2001:db8::/32",), ("http", "2001:db9::1", None), False),
        (("https://2001:db8::/32:8443",), ("https", "2001:db8::1", 8443), True),
    ],
)
def test_outbound_host_patterns_follow_spin(
    patterns: tuple[str, ...], url: tuple[str, str, int | None], ok: bool
) -> None:
    assert allowed(patterns, *url) is ok


def _byte_list_type(runtime: WasmRuntime) -> ListType:
    """The ``contents: list<u8>`` param of output-stream.write, from a component's own type."""
    wasm = bytes(
        wasmtime.wat2wasm(
            """(component
                 (import "t:t/t" (instance
                   (export "write" (func (param "contents" (list u8)))))))"""
        )
    )
    component = Component(runtime.engine, wasm)
    func = component.type.imports(runtime.engine)["t:t/t"].ty.exports(runtime.engine)["write"].ty
    assert isinstance(func, FuncType)
    ty = func.params[0][1]
    assert isinstance(ty, ListType)
    return ty


@pytest.mark.parametrize("data", [b"", b"\x00", bytes(range(256)) * 3, bytes(300_000)])
def test_the_list_u8_patch_round_trips_bytes_exactly(runtime: WasmRuntime, data: bytes) -> None:
    assert fastbytes.install(), "the fast path must be active on the pinned wasmtime (pyproject: >=50,<51)"
    ty = _byte_list_type(runtime)
    val = ffi.wasmtime_component_val_t()
    ty.convert_to_c(None, data, ctypes.pointer(val))
    assert val.kind == ffi.WASMTIME_COMPONENT_LIST.value
    assert val.of.list.size == len(data)
    assert ty.convert_from_c(val) == data


def test_the_patch_leaves_other_lists_to_the_library(runtime: WasmRuntime) -> None:
    fastbytes.install()
    wasm = bytes(
        wasmtime.wat2wasm(
            """(component (import "t:t/t" (instance (export "f" (func (param "xs" (list u32)))))))"""
        )
    )
    component = Component(runtime.engine, wasm)
    ty = component.type.imports(runtime.engine)["t:t/t"].ty.exports(runtime.engine)["f"].ty.params[0][1]
    val = ffi.wasmtime_component_val_t()
    ty.convert_to_c(None, [1, 2, 70000], ctypes.pointer(val))
    assert ty.convert_from_c(val) == [1, 2, 70000]


def test_type_memoization_returns_the_same_structure(runtime: WasmRuntime) -> None:
    from wasmtime.component import ResultType, VariantType

    from devenv.targets.local.wasi import fastcall

    assert fastcall.supported(), "fastcall is checked against the pinned wasmtime (pyproject: >=50,<51)"
    fastcall.memoize_types()
    wasm = bytes(
        wasmtime.wat2wasm(
            """(component
                 (import "t:t/t" (instance
                   (type $v (variant (case "a") (case "b" string)))
                   (export "v" (type $e (eq $v)))
                   (export "f" (func (param "x" (list u8)) (result (result u64 (error $e))))))))"""
        )
    )
    component = Component(runtime.engine, wasm)
    func = component.type.imports(runtime.engine)["t:t/t"].ty.exports(runtime.engine)["f"].ty
    assert func.params is func.params  # cached on the object
    result = func.result
    assert isinstance(result, ResultType) and result is func.result
    err = result.err
    assert isinstance(err, VariantType) and err is result.err
    assert [name for name, _ in err.cases] == ["a", "b"]
    assert err._tagged() is err._tagged() and result._tagged() == result._tagged()


def test_what_the_host_holds_for_a_request_is_bounded(tmp_path: Path) -> None:
    """A guest reading a granted file over and over (each read under the per-file limit) is
    stopped by the host's per-request budget, not by the memory cap, which sees none of it."""
    from pathlib import PurePosixPath

    from devenv.targets.local.wasi.filesystem import Descriptor, _file_bytes
    from devenv.targets.local.wasi.host import GuestTrap, HostConfig, HostContext

    big = tmp_path / "big.bin"
    big.write_bytes(bytes(1024 * 1024))
    logs: list[str] = []
    ctx = HostContext(
        config=HostConfig(component_id="c", max_host_bytes=3 * 1024 * 1024),
        log=lambda stream, text: logs.append(text),
        deadline=float("inf"),
        timeout_s=1.0,
    )
    file = Descriptor(PurePosixPath("/big.bin"), big, is_dir=False)
    for _ in range(3):
        assert len(_file_bytes(ctx, file)) == 1024 * 1024
    with pytest.raises(GuestTrap) as trap:
        _file_bytes(ctx, file)
    assert trap.value.reason.startswith("out of memory") and "3 MiB" in trap.value.reason
    assert any("/big.bin" in line for line in logs), logs


def test_a_start_function_may_call_the_host_at_deploy(runtime: WasmRuntime, tmp_path: Path) -> None:
    """The deploy-time instantiation runs a start function as a request would; it used to find
    no request context and refuse the component with a bare "python exception"."""
    wasm = bytes(
        wasmtime.wat2wasm(
            """(component
                 (import "wasi:clocks/monotonic-clock@0.2.0"
                   (instance $clk (export "now" (func (result u64)))))
                 (core func $now (canon lower (func $clk "now")))
                 (core module $m
                   (import "h" "now" (func $now (result i64)))
                   (func $start (drop (call $now)))
                   (start $start)
                   (func (export "f")))
                 (core instance $hi (export "now" (func $now)))
                 (core instance $i (instantiate $m (with "h" (instance $hi))))
                 (func $f (canon lift (core func $i "f")))
                 (instance $h (export "handle" (func $f)))
                 (export "wasi:http/incoming-handler@0.2.0" (instance $h)))"""
        )
    )
    runner = _build(runtime, tmp_path, wasm)
    assert runner.component_id == "c"


def test_relative_requests_are_allowed_as_spin_allows_them() -> None:
    from devenv.targets.local.wasi.outgoing import allows_relative

    for granted in ("http://self", "https://self", "*://self", "http://self.alt", "http://*:*", "*://*:*"):
        assert allows_relative((granted,)), granted
    for denied in ("https://example.com", "redis://self", "http://127.0.0.1:3000", "{{ host }}"):
        assert not allows_relative((denied,)), denied
