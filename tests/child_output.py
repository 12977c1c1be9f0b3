"""A child process's stdout read line by line on a thread, awaited with a deadline: for tests that
run `wasmdev` as a real subprocess and wait for what it prints."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

WAIT_S = 60.0  # a generous bound for a line to show up, never a speed assertion


class Lines:
    """stdout of a child, line by line, readable with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream) -> None:  # noqa: ANN001
        for line in stream:
            self._queue.put(line.rstrip("\n"))

    def expect(self, pattern: str, timeout: float = WAIT_S) -> re.Match[str]:
        """The first line from now on that matches ``pattern``; fails with the tail seen."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if m := regex.search(line):
                return m
        raise AssertionError(f"no line matching {pattern!r}; saw:\n" + "\n".join(self.seen[-40:]))


class _Drain:
    """A child's stream read to the end on a thread: a pipe nobody reads fills (64 KiB) and
    blocks the child's next write, which would look like a hang of the child."""

    def __init__(self, stream: IO[str]) -> None:
        self._parts: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._parts.append(line)

    def text(self, wait_s: float = 5.0) -> str:
        self._thread.join(wait_s)
        return "".join(self._parts)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def wasmdev_up(workspace: Path, cache: Path) -> Iterator[Lines]:
    """`wasmdev up --headless` on ``workspace`` as a real subprocess, its stdout as ``Lines``.

    On leaving, Ctrl-C (SIGINT) must end it within WAIT_S, with code 0 or 130 and no traceback.
    If it does not stop, SIGABRT makes Python's faulthandler print every thread's stack, and
    the failure quotes it: a hang at shutdown names where it waits."""
    from tests.engine.session import free_port

    env = dict(os.environ, XDG_CACHE_HOME=str(cache), PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    command = [sys.executable, "-m", "devenv", "up", "--headless", "-C", str(workspace), "--port", str(free_port())]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # Ctrl-C as a terminal delivers it: a suite started in the background by a non-interactive
        # shell (a CI script's `cmd &`) inherits SIGINT ignored, and so would the child, which then
        # never stops on SIGINT (its loop idles in select: the stacks showed it).
        preexec_fn=_default_sigint,
    )
    assert proc.stderr is not None
    stderr = _Drain(proc.stderr)
    try:
        yield Lines(proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(WAIT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise AssertionError(
            f"wasmdev up did not stop within {WAIT_S:.0f}s of Ctrl-C; its stderr (stacks last):\n"
            + stderr.text()[-20000:]
        ) from None
    text = stderr.text()
    assert code in (0, 130), text
    assert "Traceback" not in text, text
