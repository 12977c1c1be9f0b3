"""Compiled code is cached on disk by content, so a restart does not compile again; and a wasi:http
component is recognised and reported instead of crashing the deploy."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import wasmtime

from devenv.errors import DeployError
from devenv.model import Executor
from devenv.store.store import Store
from devenv.targets.base import UnsupportedApp
from devenv.targets.local.compile_cache import CompileCache
from devenv.targets.local.runtime import WasmRuntime
from devenv.targets.local.target import LocalTarget
from devenv.targets.local.version_builder import COMPONENT_HOST_MODULE
from devenv.targets.local.wasm_kind import WasmKind, wasm_kind
from tests.targets import local_helpers
from tests.targets.local_helpers import Client, Comp, hello_wasm, local_settings, make_app

store, target, client = local_helpers.store, local_helpers.target, local_helpers.client

EMPTY_COMPONENT = bytes(wasmtime.wat2wasm("(component)"))


async def test_restart_loads_compiled_code_from_disk(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    first = LocalTarget(Store(), local_settings(tmp_path), app_ports={"demo": 0})
    await first.deploy(app)
    assert first.cache is not None and (first.cache.compiled, first.cache.loaded) == (1, 0)
    [entry] = list(first.cache.directory.glob("*.cwasm"))
    written = entry.stat().st_mtime_ns
    await first.close()

    second = LocalTarget(Store(), local_settings(tmp_path), app_ports={"demo": 0})
    try:
        await second.deploy(app)
        assert second.cache is not None
        assert (second.cache.compiled, second.cache.loaded) == (0, 1)
        assert entry.stat().st_mtime_ns == written  # reused, not rewritten
        import aiohttp

        async with aiohttp.ClientSession() as session:
            reply = await Client(session, second).get("demo", "/hello")
        assert "hello-wat v1!" in reply.text
    finally:
        await second.close()


def test_a_different_module_or_engine_config_is_a_different_entry(tmp_path: Path) -> None:
    runtime = WasmRuntime()
    try:
        cache = CompileCache(tmp_path, runtime.config_key)
        other = CompileCache(tmp_path, runtime.config_key + ";other")
        assert cache.key(hello_wasm("v1"), "module") != cache.key(hello_wasm("v2"), "module")
        assert cache.key(hello_wasm("v1"), "module") != other.key(hello_wasm("v1"), "module")
        assert runtime.config_key.startswith("wasmtime-50.")
    finally:
        runtime.close()


def test_a_corrupt_entry_is_recompiled_and_replaced(tmp_path: Path) -> None:
    runtime = WasmRuntime()
    try:
        wasm = hello_wasm()
        cache = CompileCache(tmp_path, runtime.config_key)
        path = cache.path_for(cache.key(wasm, "module"), "module")
        path.write_bytes(b"not a serialized module")
        module = cache.module(runtime.engine, wasm)
        assert "_start" in {e.name for e in module.exports}
        assert (cache.compiled, cache.loaded) == (1, 0)
        assert path.read_bytes() != b"not a serialized module"
    finally:
        runtime.close()


def test_component_cache_round_trips(tmp_path: Path) -> None:
    runtime = WasmRuntime()
    try:
        CompileCache(tmp_path, runtime.config_key).component(runtime.engine, EMPTY_COMPONENT)
        again = CompileCache(tmp_path, runtime.config_key)
        again.component(runtime.engine, EMPTY_COMPONENT)
        assert (again.compiled, again.loaded) == (0, 1)
    finally:
        runtime.close()


def test_wasm_kind_reads_the_header() -> None:
    assert wasm_kind(hello_wasm()[:8]) is WasmKind.MODULE
    assert wasm_kind(EMPTY_COMPONENT[:8]) is WasmKind.COMPONENT
    assert wasm_kind(b"#!/bin/sh\n") is None


@pytest.fixture
def no_component_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if component_host.py were not written yet (a None entry makes its import fail)."""
    monkeypatch.setitem(sys.modules, COMPONENT_HOST_MODULE, None)


async def test_http_component_gets_a_note_and_wagi_routes_still_serve(
    no_component_host: None, client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    app = make_app(
        tmp_path / "app",
        [
            Comp("hello", routes=["/hello/..."]),
            Comp("api", routes=["/api/..."], wasm=EMPTY_COMPONENT, executor=Executor.HTTP),
        ],
    )
    result = await target.deploy(app)
    assert result.notes == (
        "component `api` is a wasi:http component: runs on the cluster target; local hosting not yet supported",
    )
    assert result.urls == (f"http://127.0.0.1:{target.bound_port('demo')}/hello",)
    assert (await client.get("demo", "/hello")).status == 200
    assert (await client.get("demo", "/api/x")).status == 404


async def test_an_app_of_only_http_components_is_unsupported(
    no_component_host: None, target: LocalTarget, tmp_path: Path
) -> None:
    app = make_app(
        tmp_path / "app", [Comp("api", routes=["/..."], wasm=EMPTY_COMPONENT, executor=Executor.HTTP)]
    )
    with pytest.raises(UnsupportedApp) as err:
        await target.deploy(app)
    assert "component `api` is a wasi:http component" in str(err.value)


async def test_executor_and_binary_kind_mismatches_say_how_to_fix_them(
    target: LocalTarget, tmp_path: Path
) -> None:
    core_as_http = make_app(tmp_path / "a", [Comp(executor=Executor.HTTP)])
    with pytest.raises(DeployError) as err:
        await target.deploy(core_as_http)
    assert 'executor = { type = "wagi" }' in str(err.value)

    component_as_wagi = make_app(tmp_path / "b", [Comp(wasm=EMPTY_COMPONENT)], digest="sha256:b")
    with pytest.raises(DeployError) as err:
        await target.deploy(component_as_wagi)
    assert "uses the WAGI executor" in str(err.value)


def _tiny_component(value: int) -> bytes:
    wat = f'(component (core module (func (export "f") (result i32) i32.const {value})))'
    return bytes(wasmtime.wat2wasm(wat))


def test_component_file_reuses_a_remembered_key_only_for_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devenv.targets.local import compile_cache

    runtime = WasmRuntime()
    try:
        cache = CompileCache(tmp_path / "cache", runtime.config_key)
        wasm = tmp_path / "app.wasm"
        wasm.write_bytes(_tiny_component(1))
        # Just written: too fresh to remember (a write in the same clock tick could be missed).
        cache.component_file(runtime.engine, wasm)
        assert not list((tmp_path / "cache" / "by-stat").glob("*"))
        assert cache.compiled == 1

        later = time.time_ns() + 10_000_000_000
        monkeypatch.setattr(compile_cache.time, "time_ns", lambda: later)
        fresh = CompileCache(tmp_path / "cache", runtime.config_key)
        fresh.component_file(runtime.engine, wasm)  # settled now: hashed once more, remembered
        assert len(list((tmp_path / "cache" / "by-stat").glob("*"))) == 1

        hashed: list[bytes] = []
        restart = CompileCache(tmp_path / "cache", runtime.config_key)
        original_key = restart.key
        monkeypatch.setattr(
            restart, "key", lambda data, kind: hashed.append(data) or original_key(data, kind)
        )
        restart.component_file(runtime.engine, wasm)
        assert (hashed, restart.compiled, restart.loaded) == ([], 0, 1)  # no read, no hash

        time.sleep(0.05)
        wasm.write_bytes(_tiny_component(2))  # same size, new bytes: a new identity
        restart.component_file(runtime.engine, wasm)
        assert hashed == [_tiny_component(2)] and restart.compiled == 1
    finally:
        runtime.close()


def test_a_cache_write_that_fails_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    def disk_full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    runtime = WasmRuntime()
    try:
        cache = CompileCache(tmp_path, runtime.config_key)
        monkeypatch.setattr(os, "replace", disk_full)
        cache.module(runtime.engine, hello_wasm())  # compiles; the entry cannot be stored
    finally:
        runtime.close()
    assert list(tmp_path.iterdir()) == []


async def test_a_slow_compile_is_said_in_the_apps_log_and_a_fast_one_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devenv.store import actions as a
    from devenv.targets.local import target as target_module
    from devenv.targets.local.deploy import VersionStager

    seen: list[a.LogEmitted] = []
    store = Store()
    store.subscribe(lambda _state, action: seen.append(action) if isinstance(action, a.LogEmitted) else None)
    local = LocalTarget(store, local_settings(tmp_path, guest_processes=0), app_ports={"demo": 0})
    try:
        await local.deploy(make_app(tmp_path / "app"))  # a tiny module: well under the 2 s
        assert not [x for x in seen if "compiling" in x.line.text]

        build = VersionStager.build

        def slow_build(self: VersionStager, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            time.sleep(0.5)  # as a big component compiling would
            return build(self, *args, **kwargs)

        monkeypatch.setattr(VersionStager, "build", slow_build)
        monkeypatch.setattr(target_module, "SLOW_BUILD_NOTE_S", 0.05)
        await local.deploy(make_app(tmp_path / "app2", [Comp(wasm=hello_wasm("v2"))], digest="sha256:v2"))
        said = [x.line for x in seen if "compiling" in x.line.text]
        assert len(said) == 1 and said[0].app == "demo" and said[0].level == "info"
        assert "cached on disk" in said[0].text
    finally:
        await local.close()
