"""The endpoint a running session serves: a Unix socket at ``<workspace>/.wasmdev/control.sock``.

Only the same user may use it: the socket file is 0600 and, since a file mode is checked only at
connect and a peer could race the chmod, every connection's peer is also checked with
SO_PEERCRED (the kernel's word for the connecting process's uid) and refused when it differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from devenv.control.messages import (
    MAX_MESSAGE_BYTES,
    BadMessage,
    ControlReply,
    ControlRequest,
    bounded,
    decode,
    encode,
)
from devenv.errors import WasmdevError

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
MAX_UNIX_PATH = 107  # sun_path is 108 bytes with its terminating NUL

Handler = Callable[[ControlRequest], Awaitable[ControlReply]]


def socket_path(state_folder: Path) -> Path:
    return Path(state_folder) / SOCKET_NAME


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


@contextlib.contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """An address for ``path`` that fits a sockaddr_un (108 bytes). A deep workspace's socket is
    reached through its folder's descriptor (``/proc/self/fd/N/control.sock``, resolved by the
    kernel at bind and connect), so the endpoint stays in the workspace however long its path."""
    if len(os.fsencode(path)) <= MAX_UNIX_PATH:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def connect(sock: socket.socket, path: Path) -> None:
    with unix_address(path) as address:
        sock.connect(address)


def _session_answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        connect(probe, path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


async def _end_of_file(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass  # more than one line from a client is ignored


class ControlServer:
    def __init__(self, state_folder: Path, handler: Handler) -> None:
        self.path = socket_path(state_folder)
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._uid = os.getuid()
        self._running: set[asyncio.Task[ControlReply]] = set()  # handlers under way, cancelled by close()

    async def start(self) -> None:
        """Listen; raises WasmdevError when another session in this workspace already does."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if await asyncio.to_thread(_session_answers, self.path):
                raise WasmdevError(
                    what="another wasmdev session already serves this workspace's control endpoint",
                    where=str(self.path),
                    fix="commands from a second terminal go to that session; stop it to move them here",
                )
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # left by a session that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with unix_address(self.path) as address:
                sock.bind(address)
            os.chmod(self.path, 0o600)
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_MESSAGE_BYTES)
        except BaseException:
            sock.close()
            raise

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock)
            if uid != self._uid:
                log.warning("control endpoint: refused a connection from uid %s", uid)
                reply = ControlReply(
                    error=f"refused: this wasmdev session belongs to another user (uid {self._uid})",
                    exit_code=1,
                )
            else:
                answered = await self._answer_while_connected(await reader.readline(), reader)
                if answered is None:
                    return  # the client left (a Ctrl-C'd `wasmdev load`): its command was cancelled
                reply = answered
            writer.write(encode(bounded(reply)))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away or sent too much: nothing to answer
        except OSError as err:
            if err.errno not in (errno.EPIPE, errno.ECONNRESET):
                log.warning("control endpoint: %s", err)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer_while_connected(self, line: bytes, reader: asyncio.StreamReader) -> ControlReply | None:
        """The command's reply, or None when the client's connection ended first: a command
        nobody waits for any more (a load test of ten minutes) is cancelled, not run out."""
        task = asyncio.ensure_future(self._answer(line))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        # A client sends one line and then only reads: what comes next is its end of file.
        gone = asyncio.ensure_future(_end_of_file(reader))
        try:
            await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
            gone.cancel()
            await asyncio.gather(task, gone, return_exceptions=True)
        if task.cancelled():
            return None
        return task.result()

    async def _answer(self, line: bytes) -> ControlReply:
        try:
            request = decode(line)
        except BadMessage as err:
            return ControlReply(
                error=f"{err} — fix: use the same wasmdev version as the session", exit_code=2
            )
        if isinstance(request, ControlReply):
            return ControlReply(error="a reply is not a command", exit_code=2)
        try:
            return await self.handler(request)
        except WasmdevError as err:
            return ControlReply(error=str(err), exit_code=1)
        except Exception as err:  # a bug in one command must not end the endpoint
            log.exception("control command %r failed", request)
            return ControlReply(error=f"the session failed to run it: {err!r} (see its log)", exit_code=1)
