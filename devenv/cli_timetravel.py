"""The time-travel commands, which talk to a running session from a second terminal:

    wasmdev history APP | rollback APP [DIGEST] | replay APP
    wasmdev load APP [--path P] [--duration 10s] [--connections 8] [--requests N]

Each sends one typed request to the session's control endpoint (devenv.control) and prints the
reply; the session is found from the workspace or any folder below it. ``add_timetravel_commands``
adds them to the ``wasmdev`` parser (devenv.cli.build_parser).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path
from typing import Any


def session_folder(start: Path) -> Path:
    """The workspace whose session to talk to: the -C folder, or the nearest parent with a
    running session's endpoint owned by this user (a second terminal may sit in an app's folder).

    The walk does not stop at a folder holding a spin.toml or wasmdev.toml: an app's folder
    inside a workspace has its own spin.toml, and `wasmdev replay` run there must still find the
    workspace's session. It stops at the user's home instead (a folder above it is not the
    user's workspace), or at the filesystem root when ``start`` is outside the home; a socket
    another user owns (say a planted /tmp/.wasmdev/control.sock) is passed over on the way, and
    the client checks the listening process's uid as well."""
    from devenv.control.server import socket_path
    from devenv.engine.history import state_dir

    home = Path.home().resolve()
    folders = [start, *start.parents]
    if start == home or home in start.parents:
        folders = folders[: folders.index(home) + 1]
    uid = os.getuid()
    for folder in folders:
        try:
            info = socket_path(state_dir(folder)).lstat()
        except OSError:
            continue
        if stat.S_ISSOCK(info.st_mode) and info.st_uid == uid:
            return folder
    return start


def cmd_control(args: argparse.Namespace) -> int:
    from devenv.control.client import send
    from devenv.control.messages import (
        CLIENT_TIMEOUT_S,
        ControlRequest,
        HistoryQuery,
        LoadCommand,
        ReplayCommand,
        RollbackCommand,
    )
    from devenv.engine.history import state_dir

    workspace = session_folder(Path(args.directory).resolve())
    request: ControlRequest
    timeout = CLIENT_TIMEOUT_S[args.command]
    if args.command == "history":
        request = HistoryQuery(app=args.app)
    elif args.command == "rollback":
        request = RollbackCommand(app=args.app, digest=args.digest)
    elif args.command == "replay":
        request = ReplayCommand(app=args.app, all_methods=args.all_methods)
    else:
        request = LoadCommand(
            app=args.app,
            path=args.path,
            duration_s=args.duration,
            connections=args.connections,
            requests=args.requests,
            all_methods=args.all_methods,
        )
        timeout = args.duration + CLIENT_TIMEOUT_S["load"]
    reply = send(workspace, state_dir(workspace), request, timeout_s=timeout)
    for line in reply.lines:
        print(line)
    if reply.error:
        print(f"wasmdev: {reply.error}", file=sys.stderr)
        return reply.exit_code or 1
    return reply.exit_code


def _duration(text: str) -> float:
    """'10s', '500ms', '2m' or plain seconds."""
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0))
    number, scale = text.strip().lower(), 1.0
    for suffix, factor in units:
        if number.endswith(suffix):
            number, scale = number[: -len(suffix)], factor
            break
    try:
        seconds = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: write 10s, 500ms or 2m") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be above zero")
    return seconds


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: use 1 or more")
    return value


def add_timetravel_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """`history`, `rollback`, `replay` and `load` on ``sub`` (the parser's subcommands), with the
    common flags (-C, --debug); each sends one request to the running session."""
    history = sub.add_parser(
        "history", parents=[common], help="a running session's kept builds of APP, newest first"
    )
    history.add_argument("app", metavar="APP")
    rollback = sub.add_parser(
        "rollback", parents=[common], help="serve the previous (or the named) kept build of APP again"
    )
    rollback.add_argument("app", metavar="APP")
    rollback.add_argument(
        "digest", nargs="?", metavar="DIGEST", help="a kept build's digest (a prefix will do)"
    )
    replay = sub.add_parser(
        "replay",
        parents=[common],
        help="replay APP's recorded requests against what serves now (exit 1 when any response differs)",
    )
    replay.add_argument("app", metavar="APP")
    load = sub.add_parser("load", parents=[common], help="load-test APP: req/s and p50/p95/p99")
    load.add_argument("app", metavar="APP")
    load.add_argument(
        "--path", metavar="P", default=None, help="the path to request (default: the recorded requests)"
    )
    load.add_argument(
        "--duration", type=_duration, default=10.0, metavar="10s", help="how long (default 10s)"
    )
    load.add_argument("--connections", type=_positive, default=8, metavar="N", help="connections (default 8)")
    load.add_argument("--requests", type=_positive, default=None, metavar="N", help="stop after N requests")
    for command in (replay, load):
        command.add_argument(
            "--all-methods",
            action="store_true",
            help="also re-send recorded POST/PUT/DELETE/PATCH requests (they change the app's data again); "
            "by default only GET, HEAD and OPTIONS are",
        )
    for command in (history, rollback, replay, load):
        command.set_defaults(func=cmd_control)
