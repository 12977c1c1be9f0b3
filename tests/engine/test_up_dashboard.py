"""`wasmdev up` in a real terminal (a pty): the dashboard opens over the engine thread, shows
the app serving, and `q` quits cleanly, stopping the engine."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_APPS
from tests.engine.session import WAIT_S, free_port

HELLO_WAT = SAMPLE_APPS / "hello-wat"


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while needle not in seen:
        if time.monotonic() > deadline:
            tail = bytes(seen[-2000:]).decode("utf-8", "replace")
            raise AssertionError(f"never saw {needle!r} on the terminal; last output:\n{tail}")
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break


@pytest.mark.skipif(
    not (HELLO_WAT / "spin.toml").is_file(), reason="sample-apps/hello-wat is not in this tree"
)
def test_up_opens_the_dashboard_and_q_quits(tmp_path: Path) -> None:
    pytest.importorskip("textual")
    shutil.copytree(HELLO_WAT, tmp_path / "hello-wat", ignore=shutil.ignore_patterns("*.wasm"))
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    env = dict(
        os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), TERM="xterm-256color", COLUMNS="140", LINES="40"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "devenv", "up", "-C", str(tmp_path), "--port", str(free_port())],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, b"serving", seen)  # the apps panel (or the log) shows it live
        os.write(master, b"q")
        code = proc.wait(WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert code == 0, bytes(seen[-2000:]).decode("utf-8", "replace")
    assert b"Traceback" not in seen
