"""A build's output: read line by line (a huge line is cut, with a note), kept bounded, and
summarised by the line that names the cause.

Toolchains print their cause early and their epilogue last: npm ends with "A complete log of this
run can be found in …", node with "Node.js v20", webpack with "compiled with 50 errors", a Rust
backtrace with "29: _start", a compiler with its caret line "| ^". So the summary is the first
line that looks like an error, by how specific the evidence is: a compiler diagnostic
(``file:line: error``, ``error[E0308]:``, ``error TS2304:``), else an exception line (Python's
last traceback line ``XxxError: …``, node's ``Error [ERR_…]: …``), else any line saying error,
and only then the last line.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator

from devenv.engine.toolchains import MissingTool, missing_tool

MAX_LINE_BYTES = 1 << 20  # a line longer than this keeps its first MiB and a note
HEAD_LINES = 100  # kept for the error panel from the start of a build's output (causes)…
TAIL_LINES = 300  # …and from its end (summaries); the build log keeps every line
PANEL_LINE_CHARS = 1000  # a kept line longer than this is shortened for the panel (≤ 400 KB in all)
_CHUNK = 1 << 16

_DIAGNOSTIC = re.compile(
    r"^\s*(?:"
    r"\S+?:\d+(?::\d+)?:\s*(?:fatal )?error\b"  # gcc/clang/zig/go: file:line:col: error: …
    r"|error(?:\[E\d+\])?: \S"  # rustc, cargo: error[E0308]: … / error: …
    r"|\S+\(\d+,\d+\): error TS\d+"  # tsc: file(3,5): error TS2304: …
    r"|error TS\d+:"
    r"|ERROR in \S"  # webpack: ERROR in ./src/index.ts 3:5 (the cause follows)
    r")"
)
_EXCEPTION = re.compile(
    r"^\s*(?:[A-Za-z_][\w.]*\.)?(?:[A-Za-z_]\w*)?(?:Error|Exception)(?: \[[A-Z0-9_]+\])?: (?!\s*File \")\S"
)
_TRACEBACK = "Traceback (most recent call last):"
_GENERIC = re.compile(r"\berror\b|\bERR_[A-Z_]+|\bfailed\b", re.IGNORECASE)
# Lines that say "error" without saying what: npm's epilogue, counters ("0 errors", "with 50 errors").
_NOISE = re.compile(
    r"^npm (?:error|ERR!) (?:A complete log|code |path |command |errno |workspace |location |$)"
    r"|\b\d+ errors?\b|^npm (?:error|ERR!)\s*$",
    re.IGNORECASE,
)


def cut_note(kept: int, total: int) -> str:
    return f" … [line cut: {total:,} bytes, the first {kept:,} kept]"


async def read_lines(stream: asyncio.StreamReader, max_bytes: int = MAX_LINE_BYTES) -> AsyncIterator[str]:
    """Each line of ``stream``; a line over ``max_bytes`` yields its first ``max_bytes`` and a
    note of how long it was, and reading goes on with the next line."""
    pending = bytearray()
    overflow = 0  # bytes of the current line dropped beyond max_bytes
    while True:
        chunk = await stream.read(_CHUNK)
        if not chunk:
            break
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end == -1 else chunk[start:end]
            room = max_bytes - len(pending)
            if len(piece) > room:
                pending += piece[: max(room, 0)]
                overflow += len(piece) - max(room, 0)
            else:
                pending += piece
            if end == -1:
                break
            yield _finish(pending, overflow)
            pending, overflow = bytearray(), 0
            start = end + 1
    if pending or overflow:
        yield _finish(pending, overflow)


def _finish(raw: bytearray, overflow: int) -> str:
    text = raw.decode("utf-8", "replace").rstrip("\r")
    return text + cut_note(len(raw), len(raw) + overflow) if overflow else text


def _short(line: str) -> str:
    return line if len(line) <= PANEL_LINE_CHARS else line[:PANEL_LINE_CHARS] + " …"


class BuildOutput:
    """Every line of one build, kept bounded (head and tail), and what it says went wrong."""

    def __init__(self, head: int = HEAD_LINES, tail: int = TAIL_LINES) -> None:
        self._head: list[str] = []
        self._head_max = head
        self._tail: deque[str] = deque(maxlen=tail)
        self._seen = 0
        self._diagnostic: str | None = None
        self._diagnostic_open = False  # webpack's "ERROR in FILE": the cause is the next line
        self._exception: str | None = None  # the first, or in a Python traceback the last
        self._in_traceback = False
        self._generic: str | None = None
        self._last: str = ""
        self.missing: MissingTool | None = None

    def add(self, line: str) -> None:
        self._seen += 1
        kept = _short(line)
        if len(self._head) < self._head_max:
            self._head.append(kept)
        else:
            self._tail.append(kept)
        if line.startswith("$ "):  # the command echo, not output
            return
        stripped = _short(line.strip())  # a summary never holds a megabyte of minified JS
        if not stripped:
            return
        self._last = stripped
        if self.missing is None:
            self.missing = missing_tool(stripped)
        if stripped.startswith(_TRACEBACK):
            self._in_traceback = True
        if self._diagnostic_open and self._diagnostic is not None:
            self._diagnostic = f"{self._diagnostic}: {stripped}"
            self._diagnostic_open = False
        elif self._diagnostic is None and _DIAGNOSTIC.match(stripped):
            self._diagnostic = stripped
            self._diagnostic_open = stripped.startswith("ERROR in ")
        elif _EXCEPTION.match(stripped) and (self._exception is None or self._in_traceback):
            self._exception = stripped
        elif self._generic is None and _GENERIC.search(stripped) and not _NOISE.search(stripped):
            self._generic = stripped

    def summary(self) -> str:
        """The line that names the cause (see the module's docstring), or ''."""
        return self._diagnostic or self._exception or self._generic or self._last

    def text(self) -> str:
        """The output kept: every line, or the head and tail with how many lines were left out."""
        omitted = self._seen - len(self._head) - len(self._tail)
        middle = [f"… {omitted:,} lines left out here (the build log has them all) …"] if omitted else []
        return "\n".join([*self._head, *middle, *self._tail])
