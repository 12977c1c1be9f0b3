"""The headless printer's lines, `wasmdev build` and `wasmdev doctor` as real subprocesses, and
the EngineThread the TUI runs the loop on."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from devenv.config import load_workspace
from devenv.engine.devloop import DevLoop
from devenv.engine.doctor import check_app_toolchain, failed, format_checks, parse_version
from devenv.engine.headless import HeadlessPrinter
from devenv.engine.runner import EngineThread
from devenv.manifest import load_app
from devenv.model import AppStatus, LogLine, LogStream, RequestRecord
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.local.target import LocalTarget
from tests.engine.session import free_port
from tests.engine.wat_app import break_source, write_wat_app


def wasmdev(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "devenv", *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd
    )


def test_printer_writes_one_line_per_log_line_and_no_duplicate_requests() -> None:
    out = io.StringIO()
    store = Store()
    store.subscribe(HeadlessPrinter(out))
    store.dispatch(a.LogEmitted(LogLine(1.0, "web", LogStream.BUILD, "compiling\nmain.c", component="c")))
    store.dispatch(a.LogEmitted(LogLine(1.0, "web", LogStream.SYSTEM, "build failed", level="error")))
    # A request as the local target reports it: the record for the graphs, the line for people.
    store.dispatch(a.RequestServed(RequestRecord(1.0, "web", "web", "GET", "/x", 500, 1.5, "000001")))
    store.dispatch(
        a.LogEmitted(
            LogLine(1.0, "web", LogStream.REQUEST, "GET /x 500 1.5ms (trapped)", "web", "000001", "error")
        )
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].endswith("[web/c] build: compiling\\nmain.c")
    assert lines[1].endswith("[web] wasmdev ERROR: build failed")
    assert lines[2].endswith("[web] request ERROR: GET /x 500 1.5ms (trapped) (000001)")

    records = io.StringIO()
    store.subscribe(HeadlessPrinter(records, print_records=True))
    store.dispatch(a.RequestServed(RequestRecord(1.0, "web", "web", "GET", "/y", 200, 2.0, "000002")))
    store.dispatch(a.RequestServed(RequestRecord(1.0, "web", "", "GET", "/", 200, 2.0, probe=True)))
    assert records.getvalue().splitlines()[-1].endswith("[web] request: GET /y 200 2.0 ms (000002)")
    assert len(records.getvalue().splitlines()) == 1


def test_build_command_builds_every_app_and_fails_with_exit_1(tmp_path: Path) -> None:
    write_wat_app(tmp_path, "good")
    bad = write_wat_app(tmp_path, "bad")
    break_source(bad)
    result = wasmdev("build", "-C", str(tmp_path))
    assert result.returncode == 1
    assert "[good] build: wrote target/app.wasm" in result.stdout
    assert "[bad] build: app.wat:" in result.stdout
    assert re.search(r"\[good\] wasmdev: built \w{12} in \d+ ms", result.stdout)
    assert re.search(r"\[bad\] wasmdev ERROR: build failed: .*exited with code 2", result.stdout)
    assert (tmp_path / "good" / "target" / "app.wasm").is_file()
    assert "Traceback" not in result.stderr

    (tmp_path / "bad" / "spin.toml").write_text("spin_manifest_version = 2\n[application]\nname = 7\n")
    broken = wasmdev("build", "bad", "-C", str(tmp_path))
    assert broken.returncode == 1
    assert "[bad] wasmdev ERROR: manifest error: " in broken.stdout and "spin.toml" in broken.stdout

    only_good = wasmdev("build", "good", "-C", str(tmp_path))
    assert only_good.returncode == 0, only_good.stdout + only_good.stderr

    unknown = wasmdev("build", "nope", "-C", str(tmp_path))
    assert unknown.returncode == 1
    assert "no app named `nope`" in unknown.stderr and "fix: pick one of: bad, good" in unknown.stderr


def test_a_bad_workspace_is_a_clean_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "wasmdev.toml").write_text("this is not toml [")
    result = wasmdev("up", "--headless", "-C", str(tmp_path))
    assert result.returncode == 1
    assert "wasmdev.toml" in result.stderr and "Traceback" not in result.stderr
    missing = wasmdev("build", "-C", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_doctor_reports_each_tool_with_its_fix(tmp_path: Path) -> None:
    write_wat_app(tmp_path, "watapp")
    needs_missing = write_wat_app(tmp_path, "exotic")
    needs_missing.write_text(
        needs_missing.read_text().replace(
            'command = "python build.py"', 'command = "wasmdev-no-such-tool --build"'
        )
    )
    result = wasmdev("doctor", "-C", str(tmp_path))
    out = result.stdout
    assert result.returncode == 1  # a needed toolchain is missing
    assert "ok       python" in out and "ok       wasmtime" in out and "ok       watchfiles" in out
    assert "ok       watapp: python" in out
    assert "MISSING  exotic: wasmdev-no-such-tool" in out and "fix: install `wasmdev-no-such-tool`" in out
    for tool in ("docker", "k3d", "kubectl"):
        assert f"  {tool}" in out


def test_doctor_checks_python_modules_a_build_runs(repo_root: Path) -> None:
    spec = load_app(repo_root / "sample-apps" / "hello-c" / "spin.toml")
    checks = check_app_toolchain(spec)
    assert [c.name for c in checks] == ["hello-c: python -m ziglang"]
    assert checks[0].ok and not failed(checks)
    assert parse_version("k3d version v5.8.3\nk3s version v1.31") == (5, 8, 3)
    assert "hello-c: python -m ziglang" in format_checks(checks)


def test_doctor_reads_quoted_shell_words_as_one_word(tmp_path: Path) -> None:
    manifest = write_wat_app(tmp_path, "py")
    command = (
        "mkdir -p target && componentize-py componentize -p \\\"$(python -c 'import spin_sdk; "
        "print(spin_sdk.__file__)')\\\" app -o target/app.wasm"
    )
    manifest.write_text(manifest.read_text().replace('"python build.py"', f'"{command}"'))
    names = [c.name for c in check_app_toolchain(load_app(manifest))]
    assert names == ["py: componentize-py", "py: import spin_sdk"]


def test_engine_thread_runs_the_loop_beside_a_ui_thread(tmp_path: Path) -> None:
    write_wat_app(tmp_path, "threaded", body="from a thread")
    workspace = load_workspace(tmp_path)
    settings = workspace.settings.with_overrides(
        local_base_port=free_port(), local_cache_dir=str(tmp_path / "c")
    )
    workspace = replace(workspace, settings=settings)
    store = Store()
    engine = EngineThread(store, lambda: DevLoop(store, workspace, LocalTarget(store, settings)))
    engine.start(wait_ready_s=60)
    try:
        deadline = time.monotonic() + 60
        while (
            store.state.apps.get("threaded") is None
            or store.state.apps["threaded"].status is not AppStatus.SERVING
        ):
            assert time.monotonic() < deadline, store.state
            time.sleep(0.02)
        import httpx

        assert "from a thread" in httpx.get(store.state.apps["threaded"].urls[0], timeout=5).text
        store.dispatch(a.ShutdownRequested())  # what the TUI sends on quit
        assert engine.join(30) and engine.error is None
    finally:
        engine.stop()


def test_doctor_reports_a_missing_dotted_python_module_instead_of_crashing(tmp_path: Path) -> None:
    manifest = write_wat_app(tmp_path, "dotted")
    manifest.write_text(manifest.read_text().replace('"python build.py"', '"python -m nosuchpkg.build"'))
    [check] = check_app_toolchain(load_app(manifest))
    assert check.name == "dotted: python -m nosuchpkg.build"
    assert not check.ok and "pip install nosuchpkg" in check.fix


def test_doctor_looks_for_toolchains_in_the_users_python_on_path(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user's active environment: a `python` (Debian's, without ziglang) first on PATH. The
    # hello-c build runs `python -m ziglang` with that PATH, so doctor must ask that python.
    user_bin = tmp_path / "user-bin"
    user_bin.mkdir()
    (user_bin / "python").symlink_to("/usr/bin/python3")
    monkeypatch.setenv("PATH", f"{user_bin}{os.pathsep}{os.environ['PATH']}")
    spec = load_app(repo_root / "sample-apps" / "hello-c" / "spin.toml")
    [check] = check_app_toolchain(spec)
    assert check.name == "hello-c: python -m ziglang"
    assert not check.ok and str(user_bin / "python") in check.detail
    assert "pip install ziglang" in check.fix
