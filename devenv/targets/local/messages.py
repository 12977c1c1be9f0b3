"""The messages between wasmdev and its serving processes: typed, versioned, framed.

Both ends are wasmdev's own code run by the same user (as with ``multiprocessing``), so a frame
is a 4-byte little-endian length and a pickled ``Frame``. The frame carries ``SCHEMA_VERSION``:
a serving process started from another checkout of wasmdev (an editable install that changed
under a running session) refuses to talk rather than misread a message.

wasmdev to a process, handled in order:
    Deploy      build ``built`` (a compile-cache hit: wasmdev compiled it) and swap it in
    Listen      serve ``app`` on the next descriptor of the descriptor socket (SCM_RIGHTS)
    Remove      close the app's port (requests in flight get the grace period)
    Interrupt   guests running now hit their deadline (wasmdev is stopping)
    Record      turn request recording on or off
    Ping        answer with Pong: a process that stops answering is hung and is replaced
A process to wasmdev:
    Ready       once wasmtime and the server are up
    Done        a Deploy or Remove finished; ``error`` is "" on success
    Pong        the answer to Ping
    Report      requests served and guest output, batched (``ServedRequest``, ``GuestOutput``)
End of file on the control socket means "exit".
"""

from __future__ import annotations

import copyreg
import io
import pickle
import struct
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from devenv.model import BuiltApp, LogStream, RecordedExchange
from devenv.targets.local.executor import ExecutionStats
from devenv.targets.local.host_settings import HostApiSettings

SCHEMA_VERSION = 3
HEADER = struct.Struct("<I")


class SchemaMismatch(Exception):
    """The other end speaks another version of this schema."""


@dataclass(frozen=True, slots=True)
class ServedRequest:
    """What one request did, reported once its response is ready (in-process or from a process)."""

    app: str
    component: str
    method: str
    path: str
    status: int
    latency_ms: float
    request_id: str
    stats: ExecutionStats = field(default_factory=ExecutionStats)
    failure: str = ""  # the short reason of a 500 from the guest (or of a 503 refusal)
    ts: float = 0.0  # wall-clock time the response was ready
    exchange: RecordedExchange | None = None  # the request and response, when recording is on


@dataclass(frozen=True, slots=True)
class GuestOutput:
    app: str
    component: str
    request_id: str
    stream: LogStream
    text: str
    ts: float


@dataclass(frozen=True, slots=True)
class Deploy:
    app: str
    seq: int
    built: BuiltApp
    host_apis: HostApiSettings | None = None  # as wasmdev's own check used them


@dataclass(frozen=True, slots=True)
class Listen:
    app: str


@dataclass(frozen=True, slots=True)
class Remove:
    app: str
    seq: int


@dataclass(frozen=True, slots=True)
class Interrupt:
    pass


@dataclass(frozen=True, slots=True)
class Record:
    on: bool  # capture each request as a RecordedExchange (shipped back in ServedRequest)


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int


@dataclass(frozen=True, slots=True)
class Ready:
    pid: int


@dataclass(frozen=True, slots=True)
class Done:
    kind: str  # "deploy" or "remove"
    app: str
    seq: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class Pong:
    seq: int


@dataclass(frozen=True, slots=True)
class Report:
    items: tuple[ServedRequest | GuestOutput, ...]


ToProcess = Deploy | Listen | Remove | Interrupt | Record | Ping
FromProcess = Ready | Done | Pong | Report


@dataclass(frozen=True, slots=True)
class Frame:
    version: int
    message: ToProcess | FromProcess


@dataclass(frozen=True)
class ProcessOptions:
    """What a serving process is started with (pickled onto its command line)."""

    cache_dir: str
    config_key: str
    host: str
    threads: int
    timeout_s: float
    memory_bytes: int
    index: int
    record_body_bytes: int = 0  # 0: recording off
    files_dir: str = ""  # where the process stages granted files; wasmdev removes it if the process dies


def read_only(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(items)


def _mapping_proxy(proxy: MappingProxyType[Any, Any]) -> tuple[Any, ...]:
    return (read_only, (dict(proxy),))


# The model's frozen mappings are read-only views, which pickle refuses; these frames rebuild them.
_DISPATCH = {**copyreg.dispatch_table, MappingProxyType: _mapping_proxy}


def pack(message: ToProcess | FromProcess) -> bytes:
    out = io.BytesIO()
    out.write(b"\0" * HEADER.size)
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(Frame(SCHEMA_VERSION, message))
    HEADER.pack_into(out.getbuffer(), 0, out.tell() - HEADER.size)
    return out.getvalue()


def unpack(payload: bytes | memoryview) -> ToProcess | FromProcess:
    frame = pickle.loads(payload)
    if not isinstance(frame, Frame) or frame.version != SCHEMA_VERSION:
        found = getattr(frame, "version", "none")
        raise SchemaMismatch(f"message schema {found}, expected {SCHEMA_VERSION}")
    return frame.message
