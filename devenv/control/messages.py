"""Typed messages of the control endpoint, one JSON object per line on the wire:
``{"kind": "rollback", "fields": {"app": "web", "digest": null}}``; the reply likewise."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # a reply carries at most a replay's diffs

# How long the CLI waits for each command's reply (a load test: its duration plus this much).
# The session's own waits inside a command stay well below these, so the client hears why a
# command did not finish instead of timing out on a session that is still waiting.
CLIENT_TIMEOUT_S = {"history": 30.0, "rollback": 600.0, "replay": 600.0, "load": 90.0}
SESSION_WAIT_S = CLIENT_TIMEOUT_S["rollback"] / 2  # e.g. a rollback waiting for a deploy under way


@dataclass(frozen=True)
class HistoryQuery:
    app: str


@dataclass(frozen=True)
class RollbackCommand:
    app: str
    digest: str | None = None  # None = the build before the one serving


@dataclass(frozen=True)
class ReplayCommand:
    app: str
    all_methods: bool = False  # also re-send POST/PUT/DELETE/PATCH (they change state)


@dataclass(frozen=True)
class LoadCommand:
    app: str
    path: str | None = None  # None = the recorded requests, else the app's first URL
    duration_s: float = 10.0
    connections: int = 8
    requests: int | None = None
    all_methods: bool = False  # the recorded POST/PUT/DELETE/PATCH too


ControlRequest = HistoryQuery | RollbackCommand | ReplayCommand | LoadCommand


@dataclass(frozen=True)
class ControlReply:
    """What the command prints and its exit code; ``error`` (with its fix) makes it fail."""

    lines: tuple[str, ...] = ()
    exit_code: int = 0
    error: str = ""


MAX_LINE_CHARS = 2_000  # a reply line longer than this (a minified body's diff line) is cut
_RESERVED_BYTES = 64 * 1024  # room for the JSON framing, escaping and the "left out" line


def bounded(reply: ControlReply) -> ControlReply:
    """``reply`` cut to fit one control message: each line to MAX_LINE_CHARS, the lines to the
    message cap, saying how much was left out (a big replay's diffs)."""
    budget = MAX_MESSAGE_BYTES - _RESERVED_BYTES - len(reply.error.encode()) * 2
    kept: list[str] = []
    cut_lines = 0
    for line in reply.lines:
        cut = len(line) > MAX_LINE_CHARS
        if cut:
            line = f"{line[:MAX_LINE_CHARS]} … ({len(line) - MAX_LINE_CHARS} more chars)"
        size = len(json.dumps(line)) + 2  # as sent: escaped, quoted, and a separator
        if size > budget:
            break
        budget -= size
        cut_lines += cut
        kept.append(line)
    left_out = len(reply.lines) - len(kept)
    notes = []
    if cut_lines:
        notes.append(f"{cut_lines} line(s) cut to {MAX_LINE_CHARS} characters")
    if left_out:
        cap = MAX_MESSAGE_BYTES // (1024 * 1024)
        notes.append(f"{left_out} more line(s) left out: a reply holds at most {cap} MiB")
    if not notes:
        return reply
    return dataclasses.replace(reply, lines=(*kept, f"… {'; '.join(notes)}"))


_KINDS: dict[str, type] = {
    "history": HistoryQuery,
    "rollback": RollbackCommand,
    "replay": ReplayCommand,
    "load": LoadCommand,
    "reply": ControlReply,
}
_NAMES = {cls: name for name, cls in _KINDS.items()}


class BadMessage(ValueError):
    """A line that is not one of the messages above."""


def encode(message: ControlRequest | ControlReply) -> bytes:
    body = {"kind": _NAMES[type(message)], "fields": dataclasses.asdict(message)}
    return json.dumps(body).encode() + b"\n"


def decode(line: bytes) -> ControlRequest | ControlReply:
    try:
        body = json.loads(line)
        cls = _KINDS[body["kind"]]
        fields: dict[str, Any] = body["fields"]
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(fields, dict) or set(fields) - known:
            raise BadMessage(f"unexpected fields for {body['kind']}: {sorted(set(fields) - known)}")
        if "lines" in fields:
            fields["lines"] = tuple(fields["lines"])
        message = cls(**fields)
    except (ValueError, KeyError, TypeError) as err:
        raise BadMessage(f"not a control message: {err}") from None
    return message  # type: ignore[no-any-return]
