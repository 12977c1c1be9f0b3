"""The headless printer: a store subscriber that writes one line per event to a text stream.

What ``wasmdev up --headless`` shows (for scripts and CI): every log line in the store: build
output, wasmdev's own messages (built, failed, serving at a URL, manifest errors), guest output
and the target's one line per request.
Each line starts with the time and the app, so it can be grepped and piped; the stream is
flushed per line so a reader sees an event as it happens.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from devenv.model import EngineState, LogLine, LogStream, RequestRecord
from devenv.store import actions as a
from devenv.store.store import Store

_STREAM_TAG = {
    LogStream.BUILD: "build",
    LogStream.REQUEST: "request",
    LogStream.SYSTEM: "wasmdev",
    LogStream.STDOUT: "stdout",
    LogStream.STDERR: "stderr",
    LogStream.POD: "pod",
}


def format_log(line: LogLine) -> str:
    app = line.app or "-"
    tag = _STREAM_TAG.get(line.stream, str(line.stream))
    level = "" if line.level == "info" else f" {line.level.upper()}"
    component = f"/{line.component}" if line.component and line.component != line.app else ""
    rid = f" ({line.request_id})" if line.request_id and line.stream is LogStream.REQUEST else ""
    return f"{_clock(line.ts)} [{app}{component}] {tag}{level}: {line.text}{rid}"


def format_request(record: RequestRecord) -> str:
    component = f"/{record.component}" if record.component and record.component != record.app else ""
    rid = f" ({record.request_id})" if record.request_id else ""
    return (
        f"{_clock(record.ts)} [{record.app}{component}] request: {record.method} {record.path} "
        f"{record.status} {record.latency_ms:.1f} ms{rid}"
    )


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


class HeadlessPrinter:
    """Subscribe with ``store.subscribe(HeadlessPrinter(sys.stdout))``.

    Requests are printed from the target's REQUEST log lines, which carry the reason a request
    failed ("trapped: …"); ``RequestServed`` records (the figures the graphs use) are not printed
    again, unless ``print_records`` is set for a target that does not log its requests.
    """

    def __init__(self, out: TextIO | None = None, *, print_records: bool = False) -> None:
        self.out = out or sys.stdout
        self.print_records = print_records
        self._lock = threading.Lock()  # actions arrive on the engine's and the target's threads

    def __call__(self, _state: EngineState, action: a.Action) -> None:
        match action:
            case a.LogEmitted(line=line):
                self._write(format_log(line))
            case a.RequestServed(record=record) if self.print_records and not record.probe:
                self._write(format_request(record))

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self.out.write(text.replace("\n", "\\n") + "\n")
                self.out.flush()
            except (BrokenPipeError, ValueError):  # the reader went away (e.g. `| head`)
                pass


def attach(store: Store, out: TextIO | None = None) -> HeadlessPrinter:
    printer = HeadlessPrinter(out)
    store.subscribe(printer)
    return printer
