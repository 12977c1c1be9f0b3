"""The builder with real build commands in real subprocesses."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import pytest

from devenv.engine.builder import Builder, app_digest, build_env
from devenv.errors import BuildError
from devenv.manifest import load_app
from devenv.model import BuildStatus, LogStream
from devenv.store import actions as a
from devenv.store.store import Store
from tests.engine.wat_app import break_source, write_wat_app


def _store_with(spec) -> Store:
    store = Store()
    store.dispatch(a.AppLoaded(spec=spec))
    return store


async def test_build_runs_the_command_streams_output_and_hashes_the_wasm(tmp_path: Path) -> None:
    spec = load_app(write_wat_app(tmp_path, "okapp"))
    store = _store_with(spec)
    built = await Builder(store).build(spec, trigger_time=123.0)

    wasm = tmp_path / "okapp" / "target" / "app.wasm"
    assert built.wasm == {"okapp": wasm}
    assert built.trigger_time == 123.0
    assert built.digest == app_digest(spec.manifest_path, [("okapp", wasm)])
    assert built.digest.startswith("sha256:") and len(built.digest) == 7 + 64
    app = store.state.apps["okapp"]
    assert app.build.status is BuildStatus.OK and app.build.digest == built.digest
    build_lines = [line.text for line in store.logs.tail(50) if line.stream is LogStream.BUILD]
    assert build_lines[0] == "$ python build.py"
    assert any(line.startswith("wrote target/app.wasm") for line in build_lines)


async def test_digest_changes_with_the_wasm_and_the_manifest(tmp_path: Path) -> None:
    manifest = write_wat_app(tmp_path, "dig")
    wasm = tmp_path / "w.wasm"
    wasm.write_bytes(b"\0asm one")
    first = app_digest(manifest, [("c", wasm)])
    wasm.write_bytes(b"\0asm two")
    second = app_digest(manifest, [("c", wasm)])
    manifest.write_text(manifest.read_text() + "\n# edited\n")
    third = app_digest(manifest, [("c", wasm)])
    assert len({first, second, third}) == 3


async def test_failed_build_names_app_command_exit_code_and_keeps_the_output(tmp_path: Path) -> None:
    manifest = write_wat_app(tmp_path, "badapp")
    break_source(manifest)
    spec = load_app(manifest)
    store = _store_with(spec)
    with pytest.raises(BuildError) as info:
        await Builder(store).build(spec)

    message = str(info.value)
    assert "app badapp" in message and "`python build.py`" in message
    assert "exited with code 2" in message and "fix:" in message
    state = store.state.apps["badapp"].build
    assert state.status is BuildStatus.FAILED
    assert state.command == "python build.py"
    assert "app.wat:" in state.output  # the compiler's own complaint is in the tail


async def test_build_commands_run_with_the_users_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user's active environment has its own `python` (as a virtualenv's bin does): the build
    # must run that one, not the interpreter wasmdev runs on.
    user_bin = tmp_path / "user-venv" / "bin"
    user_bin.mkdir(parents=True)
    shim = user_bin / "python"
    shim.write_text(f'#!/bin/sh\necho "user python ran"\nexec {sys.executable} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{user_bin}{os.pathsep}{os.environ['PATH']}")
    manifest = write_wat_app(tmp_path, "pyapp")
    spec = load_app(manifest)
    store = _store_with(spec)
    await Builder(store).build(spec)
    build_lines = [line.text for line in store.logs.tail(50) if line.stream is LogStream.BUILD]
    assert "user python ran" in build_lines
    assert build_env()["PATH"] == os.environ["PATH"]


async def test_a_build_output_line_over_1_mib_keeps_what_fits_and_says_it_was_cut(tmp_path: Path) -> None:
    manifest = write_wat_app(tmp_path, "chatty", extra_command=" && python chatty.py")
    (manifest.parent / "chatty.py").write_text("print('x' * (3 << 20))\nprint('after')\n")
    spec = load_app(manifest)
    store = _store_with(spec)
    await Builder(store).build(spec)
    build_lines = [line.text for line in store.logs.tail(50) if line.stream is LogStream.BUILD]
    long = [line for line in build_lines if line.startswith("xxxx")]
    assert len(long) == 1
    assert long[0].startswith("x" * (1 << 20) + " … [line cut: 3,145,728 bytes, the first 1,048,576 kept]")
    assert build_lines[-1] == "after"


async def test_build_timeout_kills_the_command_and_reports_it(tmp_path: Path) -> None:
    manifest = write_wat_app(tmp_path, "slowapp", extra_command=" && sleep 30")
    spec = load_app(manifest)
    store = _store_with(spec)
    started = time.monotonic()
    with pytest.raises(BuildError, match="timed out after 0.5 s"):
        await Builder(store, timeout_s=0.5).build(spec)
    # Not a timing assertion on speed: the 30 s sleep must have been killed, not waited for.
    assert time.monotonic() - started < 25
    assert "build_timeout_s" in store.state.apps["slowapp"].build.error


async def test_missing_source_after_a_successful_command_is_a_build_failure(tmp_path: Path) -> None:
    manifest = write_wat_app(tmp_path, "nosrc")
    manifest.write_text(manifest.read_text().replace('command = "python build.py"', 'command = "true"'))
    spec = load_app(manifest)
    store = _store_with(spec)
    with pytest.raises(BuildError, match="source .*target/app.wasm does not exist after the build"):
        await Builder(store).build(spec)
    assert store.state.apps["nosrc"].build.status is BuildStatus.FAILED


async def test_app_without_build_command_is_built_by_hashing_its_sources(tmp_path: Path) -> None:
    app = tmp_path / "prebuilt"
    app.mkdir()
    (app / "hello.wasm").write_bytes(b"\0asm\x01\0\0\0")
    (app / "spin.toml").write_text(
        'spin_manifest_version = 2\n[application]\nname = "prebuilt"\n'
        '[[trigger.http]]\nroute = "/..."\ncomponent = "c"\nexecutor = { type = "wagi" }\n'
        '[component.c]\nsource = "hello.wasm"\n'
    )
    spec = load_app(app / "spin.toml")
    store = _store_with(spec)
    built = await Builder(store).build(spec)
    h = hashlib.sha256((app / "spin.toml").read_bytes())
    h.update(b"\0component\0c\0" + (app / "hello.wasm").read_bytes())
    assert built.digest == "sha256:" + h.hexdigest()
    assert store.state.apps["prebuilt"].build.status is BuildStatus.OK
