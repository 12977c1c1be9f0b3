"""Commands from a second terminal: `wasmdev history/rollback/replay/load` as real subprocesses
talking to a running session over its Unix socket, and to none."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import pytest

from devenv.control.messages import ControlReply, HistoryQuery, decode, encode
from devenv.control.server import ControlServer, socket_path
from devenv.errors import WasmdevError
from tests.child_output import wasmdev_up
from tests.engine.session import WAIT_S, dev_session
from tests.engine.test_replay_and_load import record_real_request
from tests.engine.wat_app import set_body, write_wat_app


def wasmdev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devenv", *args], capture_output=True, text=True, timeout=WAIT_S * 2
    )


async def awasmdev(*args: str) -> tuple[int, str, str]:
    """The CLI in a child process, awaited without blocking the session's loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devenv", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S * 2)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    "command",
    [["history", "web"], ["rollback", "web"], ["replay", "web"], ["load", "web", "--duration", "1s"]],
)
def test_every_command_without_a_session_fails_clearly(tmp_path: Path, command: list[str]) -> None:
    result = wasmdev(*command, "-C", str(tmp_path))
    assert result.returncode == 1
    assert f"no wasmdev session runs in {tmp_path}" in result.stderr
    assert "fix: start one there with `wasmdev up`" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_socket_left_by_a_dead_session_is_no_session(tmp_path: Path) -> None:
    path = socket_path(tmp_path / ".wasmdev")
    path.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # bound, never listening: what a killed session leaves behind
    result = wasmdev("history", "web", "-C", str(tmp_path))
    assert result.returncode == 1 and "no wasmdev session runs in" in result.stderr


async def test_commands_act_on_a_running_session(tmp_path: Path, compile_cache: Path) -> None:
    manifest = write_wat_app(tmp_path, "web", body="version one")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "version one")
        await record_real_request(s, "web")
        set_body(manifest, "version two")
        await s.wait_body("web", "version two")
        await s.wait(lambda st: len(st.apps["web"].history) == 2, "two kept builds")
        newest, older = s.store.state.apps["web"].history

        # From a subfolder too: the session is found in the nearest parent.
        code, out, err = await awasmdev("history", "web", "-C", str(manifest.parent))
        assert code == 0, err
        lines = out.splitlines()
        assert re.match(rf"\* {newest.short_digest}  ", lines[0]) and "app.wat" in lines[0]
        assert re.match(rf"  {older.short_digest}  ", lines[1])
        assert all(re.search(r"\b[0-9a-f]{12}\b", line) for line in lines)

        code, out, err = await awasmdev("replay", "web", "-C", str(tmp_path))
        assert code == 1, err  # the recorded response came from version one
        assert "1 differ" in out and "-version one" in out and "+version two" in out
        assert "Bearer" not in out

        code, out, err = await awasmdev("rollback", "web", "-C", str(tmp_path))
        assert code == 0, err
        assert f"web: serving {older.short_digest}" in out
        assert "version one" in (await s.get("web")).text

        code, out, err = await awasmdev("replay", "web", "-C", str(tmp_path))
        assert code == 0, err
        assert "0 differ" in out

        code, out, err = await awasmdev("rollback", "web", "ffffffff", "-C", str(tmp_path))
        assert code == 1 and "matches no kept build" in err and newest.short_digest in err

        code, out, err = await awasmdev("history", "nope", "-C", str(tmp_path))
        assert code == 1 and "no app named nope" in err

        path = "/" + s.url("web").split("/", 3)[3]
        code, out, err = await awasmdev(
            "load", "web", "--path", path, "--requests", "40", "--connections", "4", "-C", str(tmp_path)
        )
        assert code == 0, err
        assert "40 requests to " + path in out
        assert re.search(r"[\d.]+ req/s\s+p50 [\d.]+ ms\s+p95 [\d.]+ ms\s+p99 [\d.]+ ms\s+errors 0", out)


def test_wasmdev_up_serves_the_endpoint_and_removes_it_on_exit(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    manifest = write_wat_app(workspace, "web", body="up one")
    with wasmdev_up(workspace, tmp_path / "cache") as lines:
        url = lines.expect(r"\[web\] wasmdev: serving \w+ at (http://127\.0\.0\.1:\d+/\S+)").group(1)
        set_body(manifest, "up two")
        lines.expect(r"\[web\] wasmdev: serving \w+ at .*edit→serving")
        assert "up two" in httpx.get(url, timeout=5).text
        sock = socket_path(workspace / ".wasmdev")
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        result = wasmdev("rollback", "web", "-C", str(workspace))
        assert result.returncode == 0, result.stderr
        assert "up one" in httpx.get(url, timeout=5).text
        lines.expect(r"\[web\] wasmdev: rolled back to \w{12}… \(built \d+s ago\); save to build again")
    assert not socket_path(workspace / ".wasmdev").exists()
    assert wasmdev("history", "web", "-C", str(workspace)).returncode == 1


async def test_another_user_is_refused(tmp_path: Path) -> None:
    """The socket is 0600; the peer's uid is checked too (here with the mode opened up, as if a
    peer had raced the chmod), which needs root to connect as another user."""

    async def handler(_request: object) -> ControlReply:
        return ControlReply(lines=("answered",))

    folder = Path(tempfile.mkdtemp(prefix="wasmdev-ctl-"))  # /tmp/..., reachable by others
    server = ControlServer(folder / ".wasmdev", handler)
    await server.start()
    try:
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
        reply = await asyncio.to_thread(_ask, server.path, None)
        assert reply == ControlReply(lines=("answered",))
        if os.getuid() == 0:
            os.chmod(folder, 0o755)
            os.chmod(server.path.parent, 0o755)
            os.chmod(server.path, 0o666)
            refused = await asyncio.to_thread(_ask, server.path, 65534)
            assert refused.exit_code == 1 and "belongs to another user" in refused.error
            assert refused.lines == ()
    finally:
        await server.close()


def _ask(path: Path, uid: int | None) -> ControlReply:
    """A history query from a forked child running as ``uid`` (None: this user). A fork, not a
    new interpreter: wasmdev's venv may not be readable by the other user."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only os and socket calls, then _exit
        status = 0
        try:
            os.close(read_end)
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(WAIT_S)
                sock.connect(str(path))
                try:
                    sock.sendall(encode(HistoryQuery(app="web")))
                except BrokenPipeError:
                    pass  # refused: the session answered and closed before reading a word
                os.write(write_end, sock.makefile("rb").readline())
        except BaseException as err:
            os.write(write_end, f"child error: {err!r}".encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        data = answer.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0, f"the client child failed ({status}): {data!r}"
    reply = decode(data)
    assert isinstance(reply, ControlReply)
    return reply


async def test_a_second_session_in_the_workspace_leaves_the_first_ones_endpoint_alone(tmp_path: Path) -> None:
    async def first(_request: object) -> ControlReply:
        return ControlReply(lines=("first session",))

    async def second(_request: object) -> ControlReply:
        return ControlReply(lines=("second session",))

    server = ControlServer(tmp_path / ".wasmdev", first)
    await server.start()
    try:
        with pytest.raises(WasmdevError, match="another wasmdev session already serves"):
            await ControlServer(tmp_path / ".wasmdev", second).start()
        assert (await asyncio.to_thread(_ask, server.path, None)).lines == ("first session",)
    finally:
        await server.close()


async def test_a_deep_workspace_keeps_its_endpoint_in_the_workspace(tmp_path: Path) -> None:
    """sockaddr_un holds 108 bytes; a deeper socket path is bound and reached through its folder."""

    async def handler(_request: object) -> ControlReply:
        return ControlReply(lines=("from deep down",))

    workspace = tmp_path / ("d" * 60) / ("e" * 60)
    workspace.mkdir(parents=True)
    server = ControlServer(workspace / ".wasmdev", handler)
    await server.start()
    try:
        assert len(str(server.path)) > 108
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o600 and stat.S_ISSOCK(server.path.stat().st_mode)
        code, out, err = await awasmdev("history", "web", "-C", str(workspace))
        assert code == 0, err
        assert out == "from deep down\n"
    finally:
        await server.close()
    assert not server.path.exists()


def _bind(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the socket file stays: enough for the walk, which only looks at it


def test_the_walk_up_finds_only_the_users_own_session_and_stops_at_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devenv.cli_timetravel import session_folder

    home = tmp_path / "home" / "me"
    workspace = home / "ws"
    app = workspace / "web"
    app.mkdir(parents=True)
    (app / "spin.toml").write_text("")  # an app's own manifest does not stop the walk
    monkeypatch.setenv("HOME", str(home))
    _bind(socket_path(tmp_path / ".wasmdev"))  # above the home: never reached from inside it
    assert session_folder(app) == app
    _bind(socket_path(workspace / ".wasmdev"))
    assert session_folder(app) == workspace
    if os.getuid() == 0:  # as another user's planted socket would be
        os.lchown(socket_path(workspace / ".wasmdev"), 65534, 65534)
        assert session_folder(app) == app
        outside = tmp_path / "elsewhere" / "deep"
        outside.mkdir(parents=True)
        assert session_folder(outside) == tmp_path  # outside the home: up to the root
        os.lchown(socket_path(tmp_path / ".wasmdev"), 65534, 65534)
        assert session_folder(outside) == outside


def test_the_client_refuses_a_socket_served_by_another_user(tmp_path: Path) -> None:
    """Whoever listens must be this user: the peer's uid (SO_PEERCRED) is checked before a word
    is sent. Needs root to listen as another user."""
    from devenv.control.client import send

    if os.getuid() != 0:
        pytest.skip("listening as another user needs root")
    folder = Path(tempfile.mkdtemp(prefix="wasmdev-planted-"))
    os.chmod(folder, 0o777)
    path = socket_path(folder / ".wasmdev")
    path.parent.mkdir(mode=0o777)
    os.chmod(path.parent, 0o777)
    ready_r, ready_w = os.pipe()
    got_r, got_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the stranger: listens, and reports whatever it is sent
        status = 0
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX) as server:
                server.bind(str(path))
                server.listen(1)
                os.write(ready_w, b"1")
                conn, _ = server.accept()
                conn.settimeout(WAIT_S)
                with conn:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        data = b""
                    os.write(got_w, data or b"-")
        except BaseException as err:
            os.write(ready_w, f"child error: {err!r}".encode())
            status = 1
        finally:
            os._exit(status)
    os.close(ready_w)
    os.close(got_w)
    assert os.read(ready_r, 200) == b"1"
    with pytest.raises(WasmdevError) as caught:
        send(folder, folder / ".wasmdev", HistoryQuery(app="web"), timeout_s=WAIT_S)
    assert "served by another user (uid 65534)" in caught.value.what
    with os.fdopen(got_r, "rb") as got:
        assert got.read() == b"-"  # the stranger was sent nothing
    os.waitpid(pid, 0)
    os.close(ready_r)


async def test_a_command_is_cancelled_when_its_client_leaves_and_when_the_session_ends(tmp_path: Path) -> None:
    """A Ctrl-C'd `wasmdev load --duration 10m` must not keep loading: the handler runs as a
    task that ends with the client's connection, and close() cancels those still running."""
    started: asyncio.Queue[str] = asyncio.Queue()
    cancelled: asyncio.Queue[str] = asyncio.Queue()

    async def handler(request: object) -> ControlReply:
        assert isinstance(request, HistoryQuery)
        await started.put(request.app)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await cancelled.put(request.app)
            raise
        return ControlReply()

    server = ControlServer(tmp_path / ".wasmdev", handler)
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(encode(HistoryQuery(app="left")))
        await writer.drain()
        assert await asyncio.wait_for(started.get(), WAIT_S) == "left"
        writer.close()  # the client goes away (Ctrl-C)
        assert await asyncio.wait_for(cancelled.get(), WAIT_S) == "left"

        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(encode(HistoryQuery(app="stays")))
        await writer.drain()
        assert await asyncio.wait_for(started.get(), WAIT_S) == "stays"
    finally:
        await asyncio.wait_for(server.close(), WAIT_S)
    assert cancelled.get_nowait() == "stays"  # the session ended: its running commands with it
    assert await asyncio.wait_for(reader.read(), WAIT_S) == b""
    writer.close()


async def test_a_reply_too_big_for_one_message_is_cut_saying_so(tmp_path: Path) -> None:
    """A big replay's diffs: each line is cut, the reply fits the message cap and says how much
    was left out; a reply over the cap anyway (an older session) is a clear error."""
    from devenv.control.client import send
    from devenv.control.messages import MAX_LINE_CHARS, MAX_MESSAGE_BYTES

    huge = tuple(f"line {i} " + "é" * 3_000 for i in range(2_000))  # ~12 MB as JSON

    async def handler(_request: object) -> ControlReply:
        return ControlReply(lines=huge, exit_code=1)

    server = ControlServer(tmp_path / ".wasmdev", handler)
    await server.start()
    try:
        reply = await asyncio.to_thread(send, tmp_path, tmp_path / ".wasmdev", HistoryQuery(app="web"), WAIT_S)
    finally:
        await server.close()
    assert reply.exit_code == 1
    assert len(encode(reply)) <= MAX_MESSAGE_BYTES
    assert reply.lines[0].startswith("line 0 ") and len(reply.lines[0]) < MAX_LINE_CHARS + 40
    shown = len(reply.lines) - 1
    assert 0 < shown < len(huge)
    assert reply.lines[-1] == (
        f"… {shown} line(s) cut to {MAX_LINE_CHARS} characters; "
        f"{len(huge) - shown} more line(s) left out: a reply holds at most 4 MiB"
    )

    # A session that does not cut (an older version): the client says what happened.
    listener = socket.socket(socket.AF_UNIX)
    path = socket_path(tmp_path / "old" / ".wasmdev")
    path.parent.mkdir(parents=True)
    listener.bind(str(path))
    listener.listen(1)

    def old_session() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            with contextlib.suppress(OSError):
                conn.sendall(b'{"kind": "reply", "fields": {"lines": ["' + b"x" * (MAX_MESSAGE_BYTES + 10) + b'"]}}\n')

    thread = threading.Thread(target=old_session)
    thread.start()
    try:
        with pytest.raises(WasmdevError, match="reply is too large"):
            await asyncio.to_thread(send, path.parent.parent, path.parent, HistoryQuery(app="web"), WAIT_S)
    finally:
        thread.join(WAIT_S)
        listener.close()
