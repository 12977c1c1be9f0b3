"""Folders of a session killed with SIGKILL are removed by the next session that makes the same
kind; folders of live sessions are not."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from devenv.session_dirs import new_session_folder


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_new_folder_removes_those_dead_sessions_left_and_keeps_live_ones(tmp_path: Path) -> None:
    dead = tmp_path / f"wasmdev-files-{dead_pid()}-x1"
    (dead / "app").mkdir(parents=True)
    (dead / "app" / "copy.txt").write_text("left by a killed session")
    live = tmp_path / f"wasmdev-files-{os.getppid()}-x2"  # the process that started this test runs
    live.mkdir()
    other_kind = tmp_path / f"wasmdev-serving-{dead_pid()}-x3"
    other_kind.mkdir()

    made = new_session_folder(tmp_path, "wasmdev-files", "web")
    assert made.is_dir() and made.name.startswith(f"wasmdev-files-{os.getpid()}-web-")
    assert not dead.exists()
    assert live.is_dir()
    assert other_kind.is_dir()  # removed when a folder of its own kind is made


async def test_the_local_target_removes_staged_files_a_killed_session_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devenv.store.store import Store
    from devenv.targets.local.target import LocalTarget
    from tests.targets.local_helpers import local_settings

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    left = [tmp_path / f"wasmdev-files-{dead_pid()}-abc", tmp_path / f"wasmdev-serving-{dead_pid()}-def"]
    for folder in left:
        folder.mkdir()
        (folder / "staged.txt").write_text("x")
    target = LocalTarget(Store(), local_settings(tmp_path / "ws", guest_processes=1), app_ports={})
    await target.start()
    try:
        assert not any(folder.exists() for folder in left)
    finally:
        await target.close()
    assert not list(tmp_path.glob("wasmdev-files-*")) and not list(tmp_path.glob("wasmdev-serving-*"))
