"""A child process's stdout read line by line on a thread, awaited with a deadline: for tests that
run `wasmdev` as a real subprocess and wait for what it prints."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time

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
