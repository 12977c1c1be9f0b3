"""What ``wasmdev history/rollback/replay/load`` use: send one request to the session running in
the workspace and wait for its reply."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from devenv.control.messages import (
    MAX_MESSAGE_BYTES,
    BadMessage,
    ControlReply,
    ControlRequest,
    decode,
    encode,
)
from devenv.control.server import connect, peer_uid, socket_path
from devenv.errors import WasmdevError


def no_session(workspace: Path, path: Path) -> WasmdevError:
    return WasmdevError(
        what=f"no wasmdev session runs in {workspace}",
        where=str(path),
        fix="start one there with `wasmdev up` (another terminal), or pass -C DIR to name its workspace",
    )


def send(
    workspace: Path, state_folder: Path, request: ControlRequest, timeout_s: float = 60.0
) -> ControlReply:
    path = socket_path(state_folder)
    if not path.exists():
        raise no_session(workspace, path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            connect(sock, path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise no_session(workspace, path) from None
        except PermissionError:
            raise WasmdevError(
                what=f"the wasmdev session in {workspace} belongs to another user",
                where=str(path),
                fix="run the command as the user who started `wasmdev up`",
            ) from None
        # The socket's folder may be another user's (a /tmp parent of the workspace): whoever
        # listens there must be us, or our commands (and their replies) go to a stranger.
        server_uid = peer_uid(sock)
        if server_uid != os.getuid():
            raise WasmdevError(
                what=f"the control socket is served by another user (uid {server_uid}), not by you; "
                "nothing was sent to it",
                where=str(path),
                fix="run the command inside your own workspace, or name it with -C DIR",
            )
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                # A session that refuses us answers and closes before reading: read its answer.
                sock.sendall(encode(request))
            data = _read_line(sock)
        except TimeoutError:
            raise WasmdevError(
                what=f"the session in {workspace} did not answer within {timeout_s:.0f}s",
                where=str(path),
                fix="check the session is not stuck (its dashboard or log), then try again",
            ) from None
    if len(data) > MAX_MESSAGE_BYTES:  # _read_line stops past the cap
        raise WasmdevError(
            what=f"the session's reply is too large (over {MAX_MESSAGE_BYTES // (1024 * 1024)} MiB); "
            "nothing of it is shown",
            where=str(path),
            fix="see the session's dashboard or log for the result; a session of the same wasmdev "
            "version cuts its replies to fit",
        )
    if not data:
        raise WasmdevError(
            what=f"the session in {workspace} closed the connection without an answer",
            where=str(path),
            fix="check the session's log; it may be shutting down",
        )
    try:
        reply = decode(data)
    except BadMessage as err:
        raise WasmdevError(
            what=f"the session sent {err}", fix="use the same wasmdev version as the session"
        ) from None
    if not isinstance(reply, ControlReply):
        raise WasmdevError(
            what="the session answered with a command", fix="use the same wasmdev version as the session"
        )
    return reply


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > MAX_MESSAGE_BYTES:
            break
    return b"".join(chunks)
