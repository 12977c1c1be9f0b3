"""wasi:io 0.2 (error, poll, streams) in Python.

Every other interface that names a stream or pollable (http bodies, stdio, clocks, files) hands
out these classes, which is why wasi:io must live on the Python side: the guest checks that a
stream from wasi:cli/stdout and one from wasi:http/types are the same resource type.

Transfers are capped at ``MAX_CHUNK`` per call: wasmtime refuses one host<->guest copy of about
3 MB ("fuel allocated for hostcalls has been exhausted"), so ``check-write`` never permits more
and a read never returns more; a 10 MB body simply takes more calls. The C API passes a list as
one 32-byte value per byte, so a chunk costs 32x its size in transient memory; measured per MiB
moved, 64-256 KiB chunks were fastest and 1 MiB ones several times slower.
"""

from __future__ import annotations

import time
from typing import Any

from wasmtime.component import ResourceAny

from devenv.model import LogStream
from devenv.targets.local.wasi.codec import Case, Err, Ok
from devenv.targets.local.wasi.host import HostContext, Kind, Resource
from devenv.targets.local.wasi.registry import Interface

MAX_CHUNK = 128 * 1024
MAX_LOG_LINE = 8 * 1024  # a guest printing without newlines still gets cut into log lines
MAX_LOG_LINES = 1000  # per stream per request; the rest is dropped with one note

CLOSED = Case("closed")


class Pollable(Resource):
    """Ready now, or at a monotonic time (clock subscriptions). Nothing here waits on I/O: bodies
    are in memory and outbound requests complete when their result is read."""

    KIND = Kind.POLLABLE

    def __init__(self, ready_at_ns: int | None = None) -> None:
        self.ready_at_ns = ready_at_ns

    def ready(self) -> bool:
        return self.ready_at_ns is None or time.monotonic_ns() >= self.ready_at_ns

    def block(self, ctx: HostContext) -> None:
        if self.ready_at_ns is not None and not self.ready():
            ctx.sleep_until(self.ready_at_ns / 1e9)


class IoError(Resource):
    KIND = Kind.IO_ERROR

    def __init__(self, message: str) -> None:
        self.message = message


class InputStream(Resource):
    """Reads an in-memory buffer (a request body, a granted file, empty stdin)."""

    KIND = Kind.INPUT_STREAM

    def __init__(self, data: bytes | memoryview) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, n: int) -> bytes | None:
        """Up to ``n`` bytes; None once everything was read (the stream is closed)."""
        if self._pos >= len(self._data):
            return None
        end = min(len(self._data), self._pos + min(n, MAX_CHUNK))
        chunk = self._data[self._pos : end].tobytes()
        self._pos = end
        return chunk

    def skip(self, n: int) -> int | None:
        if self._pos >= len(self._data):
            return None
        end = min(len(self._data), self._pos + n)
        skipped, self._pos = end - self._pos, end
        return skipped


class Sink:
    """Where an output stream's bytes go."""

    closed = False

    def write(self, ctx: HostContext, data: bytes) -> None:
        raise NotImplementedError


class BufferSink(Sink):
    """Collects a body (an HTTP response's, an outbound request's), up to ``limit`` bytes."""

    def __init__(self, limit: int, what: str) -> None:
        self.data = bytearray()
        self.limit = limit
        self.what = what

    def write(self, ctx: HostContext, data: bytes) -> None:
        if len(self.data) + len(data) > self.limit:
            ctx.trap(f"{self.what} is larger than {self.limit // (1024 * 1024)} MiB")
        ctx.hold(len(data), self.what)
        self.data += data


class LogSink(Sink):
    """Guest stdout/stderr: split into lines for the app's log stream, bounded per request."""

    def __init__(self, ctx: HostContext, stream: LogStream) -> None:
        self._ctx = ctx
        self._stream = stream
        self._partial = bytearray()
        self._lines = 0

    def write(self, ctx: HostContext, data: bytes) -> None:
        self._partial += data
        while True:
            cut = self._partial.find(b"\n")
            if cut >= 0:
                line = bytes(self._partial[:cut])
                del self._partial[: cut + 1]
            elif len(self._partial) >= MAX_LOG_LINE:
                line = bytes(self._partial[:MAX_LOG_LINE])
                del self._partial[:MAX_LOG_LINE]
            else:
                return
            self._emit(line)

    def flush(self) -> None:
        if self._partial:
            self._emit(bytes(self._partial))
            self._partial.clear()

    def _emit(self, line: bytes) -> None:
        self._lines += 1
        if self._lines <= MAX_LOG_LINES:
            self._ctx.log(self._stream, line.decode("utf-8", errors="replace").rstrip("\r"))
        elif self._lines == MAX_LOG_LINES + 1:
            self._ctx.log(
                self._stream,
                f"[wasmdev: more than {MAX_LOG_LINES} lines; the rest of this request's output is dropped]",
            )


class OutputStream(Resource):
    KIND = Kind.OUTPUT_STREAM

    def __init__(self, sink: Sink) -> None:
        self.sink = sink


# -- wasi:io/poll -------------------------------------------------------------------------------


def _pollable_ready(ctx: HostContext, self: ResourceAny) -> bool:
    return ctx.borrow(self, Pollable).ready()


def _pollable_block(ctx: HostContext, self: ResourceAny) -> None:
    ctx.borrow(self, Pollable).block(ctx)


def _poll(ctx: HostContext, pollables: list[ResourceAny]) -> list[int]:
    if not pollables:
        ctx.trap("wasi:io/poll#poll called with an empty list")
    items = [ctx.borrow(p, Pollable) for p in pollables]
    ready = [i for i, p in enumerate(items) if p.ready()]
    if ready:
        return ready
    soonest = min(p.ready_at_ns for p in items if p.ready_at_ns is not None)
    ctx.sleep_until(soonest / 1e9)
    return [i for i, p in enumerate(items) if p.ready()] or [0]


# -- wasi:io/error ------------------------------------------------------------------------------


def _error_to_debug_string(ctx: HostContext, self: ResourceAny) -> str:
    return ctx.borrow(self, IoError).message


# -- wasi:io/streams ----------------------------------------------------------------------------


def _read(ctx: HostContext, self: ResourceAny, n: int) -> Any:
    data = ctx.borrow(self, InputStream).read(n)
    return Err(CLOSED) if data is None else Ok(data)


def _skip(ctx: HostContext, self: ResourceAny, n: int) -> Any:
    skipped = ctx.borrow(self, InputStream).skip(n)
    return Err(CLOSED) if skipped is None else Ok(skipped)


def _subscribe(ctx: HostContext, self: ResourceAny) -> Any:
    ctx.borrow(self, Resource)
    return ctx.own(Pollable())


def _check_write(ctx: HostContext, self: ResourceAny) -> Any:
    stream = ctx.borrow(self, OutputStream)
    return Err(CLOSED) if stream.sink.closed else Ok(MAX_CHUNK)


BLOCKING_WRITE_LIMIT = 4096  # wasi:io says blocking-write-and-flush takes at most 4096 bytes


def _write(ctx: HostContext, self: ResourceAny, contents: bytes) -> Any:
    stream = ctx.borrow(self, OutputStream)
    if stream.sink.closed:
        return Err(CLOSED)
    if len(contents) > MAX_CHUNK:
        # As wasmtime's WASI (and so Spin) does: a guest that ignores check-write fails here,
        # not later on a runtime with other buffer sizes.
        ctx.trap(
            f"output-stream.write of {len(contents)} bytes exceeds the {MAX_CHUNK} that check-write permits"
        )
    stream.sink.write(ctx, contents)
    return Ok()


def _blocking_write_and_flush(ctx: HostContext, self: ResourceAny, contents: bytes) -> Any:
    if len(contents) > BLOCKING_WRITE_LIMIT:
        ctx.borrow(self, OutputStream)
        ctx.trap(
            f"output-stream.blocking-write-and-flush of {len(contents)} bytes: at most "
            f"{BLOCKING_WRITE_LIMIT} per call (write larger bodies with check-write and write)"
        )
    return _write(ctx, self, contents)


def _flush(ctx: HostContext, self: ResourceAny) -> Any:
    stream = ctx.borrow(self, OutputStream)
    return Err(CLOSED) if stream.sink.closed else Ok()


def _write_zeroes(ctx: HostContext, self: ResourceAny, n: int) -> Any:
    stream = ctx.borrow(self, OutputStream)
    if stream.sink.closed:
        return Err(CLOSED)
    if n > MAX_CHUNK:
        ctx.trap(f"write-zeroes of {n} bytes exceeds the permitted {MAX_CHUNK} (check-write)")
    stream.sink.write(ctx, bytes(n))
    return Ok()


def _splice(ctx: HostContext, self: ResourceAny, src: ResourceAny, n: int) -> Any:
    out = ctx.borrow(self, OutputStream)
    source = ctx.borrow(src, InputStream)
    if out.sink.closed:
        return Err(CLOSED)
    data = source.read(min(n, MAX_CHUNK))
    if data is None:
        return Err(CLOSED)
    out.sink.write(ctx, data)
    return Ok(len(data))


INTERFACES = [
    Interface(
        "wasi:io/poll",
        resources={"pollable": Kind.POLLABLE},
        functions={
            "[method]pollable.ready": _pollable_ready,
            "[method]pollable.block": _pollable_block,
            "poll": _poll,
        },
    ),
    Interface(
        "wasi:io/error",
        resources={"error": Kind.IO_ERROR},
        functions={"[method]error.to-debug-string": _error_to_debug_string},
    ),
    Interface(
        "wasi:io/streams",
        resources={"input-stream": Kind.INPUT_STREAM, "output-stream": Kind.OUTPUT_STREAM},
        functions={
            "[method]input-stream.read": _read,
            "[method]input-stream.blocking-read": _read,
            "[method]input-stream.skip": _skip,
            "[method]input-stream.blocking-skip": _skip,
            "[method]input-stream.subscribe": _subscribe,
            "[method]output-stream.check-write": _check_write,
            "[method]output-stream.write": _write,
            "[method]output-stream.blocking-write-and-flush": _blocking_write_and_flush,
            "[method]output-stream.flush": _flush,
            "[method]output-stream.blocking-flush": _flush,
            "[method]output-stream.subscribe": _subscribe,
            "[method]output-stream.write-zeroes": _write_zeroes,
            "[method]output-stream.blocking-write-zeroes-and-flush": _write_zeroes,
            "[method]output-stream.splice": _splice,
            "[method]output-stream.blocking-splice": _splice,
        },
    ),
]
