"""Replay: send an app's recorded requests to the build serving now and compare each response
with the one recorded (status, headers except volatile ones, body as a text or byte diff).

Replayed requests carry ``x-wasmdev-replay: 1`` so the serving side does not record them as
real traffic. What is shown masks secrets (authorization, cookies); what is sent does not, since
a replay must be the same request.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

import aiohttp

from devenv.model import ExchangeDifference, RecordedExchange, ReplayReport
from devenv.targets.base import REPLAY_HEADER

SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# Headers that differ between two identical responses (or are framing, checked via the body).
VOLATILE_HEADERS = frozenset(
    {
        "date",
        "age",
        "expires",
        "server",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "x-request-id",
        "x-wasmdev-request-id",
    }
)
# Not forwarded: framing and routing headers the client sets again for the replayed request.
_NOT_SENT = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "expect"})
MAX_DIFF_LINES = 200
# Sent again by default: a recorded POST/PUT/DELETE/PATCH would write to the app's real stores
# (Redis, Postgres, key-value) once more, so it is re-sent only when asked (--all-methods).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_safe(method: str) -> bool:
    return method.upper() in SAFE_METHODS
MAX_DIFF_LINE_CHARS = 500  # a minified body is one line: its diff line is cut, not shown whole


def mask(name: str, value: str) -> str:
    """A header value as shown: secrets are replaced by their length."""
    return f"•••• ({len(value)} chars)" if name.lower() in SECRET_HEADERS else value


def shown_headers(headers: Iterable[tuple[str, str]]) -> list[str]:
    return [f"{name}: {mask(name, value)}" for name, value in headers]


def origin_of(url: str) -> str:
    """``http://127.0.0.1:3000`` from any of the app's URLs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def header_changes(
    recorded: Sequence[tuple[str, str]], replayed: Sequence[tuple[str, str]]
) -> tuple[str, ...]:
    def table(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in headers:
            if name.lower() not in VOLATILE_HEADERS:
                out.setdefault(name.lower(), []).append(value)
        return out

    before, after = table(recorded), table(replayed)
    lines: list[str] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, []), after.get(name, [])
        if old == new:
            continue
        lines += [f"- {name}: {mask(name, v)}" for v in old]
        lines += [f"+ {name}: {mask(name, v)}" for v in new]
    return tuple(lines)


def _text(body: bytes) -> str | None:
    if b"\0" in body:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def body_diff(recorded: bytes, replayed: bytes) -> str:
    """ "" when equal; a unified diff for text; a byte summary for anything else."""
    if recorded == replayed:
        return ""
    old, new = _text(recorded), _text(replayed)
    if old is not None and new is not None:
        lines = list(
            difflib.unified_diff(old.splitlines(), new.splitlines(), "recorded", "replayed", lineterm="", n=2)
        )
        if not lines:  # differ only in line endings or a final newline
            lines = [f"- {old!r}"[:200], f"+ {new!r}"[:200]]
        lines = [
            f"{line[:MAX_DIFF_LINE_CHARS]} … ({len(line) - MAX_DIFF_LINE_CHARS} more chars)"
            if len(line) > MAX_DIFF_LINE_CHARS
            else line
            for line in lines
        ]
        if len(lines) > MAX_DIFF_LINES:
            lines = lines[:MAX_DIFF_LINES] + [f"… {len(lines) - MAX_DIFF_LINES} more diff lines"]
        return "\n".join(lines)
    first = next((i for i, (x, y) in enumerate(zip(recorded, replayed, strict=False)) if x != y), None)
    where = first if first is not None else min(len(recorded), len(replayed))
    return f"binary bodies differ: {len(recorded)} bytes recorded, {len(replayed)} replayed; first difference at byte {where}"


def compare(
    exchange: RecordedExchange, status: int, headers: Sequence[tuple[str, str]], body: bytes
) -> ExchangeDifference | None:
    changes = header_changes(exchange.response_headers, headers)
    diff = "" if exchange.response_truncated else body_diff(exchange.response_body, body)
    if status == exchange.status and not changes and not diff:
        return None
    return ExchangeDifference(
        request_id=exchange.request_id,
        method=exchange.method,
        target=request_target(exchange),
        recorded_status=exchange.status,
        replayed_status=status,
        header_changes=changes,
        body_diff=diff,
    )


def request_target(exchange: RecordedExchange) -> str:
    return exchange.path + (f"?{exchange.query}" if exchange.query else "")


def replay_headers(exchange: RecordedExchange) -> list[tuple[str, str]]:
    headers = [(n, v) for n, v in exchange.headers if n.lower() not in _NOT_SENT | {REPLAY_HEADER}]
    headers.append((REPLAY_HEADER, "1"))
    return headers


async def replay_exchanges(
    app: str,
    exchanges: Sequence[RecordedExchange],
    origin: str,
    serving_digest: str,
    *,
    all_methods: bool = False,
    timeout_s: float = 30.0,
) -> ReplayReport:
    """Send each exchange (oldest first, one at a time: the order a user produced them in) to
    ``origin`` and compare. A request with a truncated body is skipped, not sent cut short; one
    whose method is not safe (SAFE_METHODS) is skipped unless ``all_methods``."""
    differences: list[ExchangeDifference] = []
    replayed = skipped = unsafe_skipped = 0
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    # auto_decompress off: the recorded body is the bytes served, compressed or not.
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        for exchange in exchanges:
            if not all_methods and not is_safe(exchange.method):
                unsafe_skipped += 1
                continue
            if exchange.body_truncated:
                skipped += 1
                continue
            replayed += 1
            try:
                async with session.request(
                    exchange.method,
                    origin + request_target(exchange),
                    headers=replay_headers(exchange),
                    data=exchange.body or None,
                    allow_redirects=False,
                    skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
                ) as response:
                    body = await response.read()
                    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers]
                    difference = compare(exchange, response.status, headers, body)
            except (aiohttp.ClientError, TimeoutError) as err:
                difference = ExchangeDifference(
                    request_id=exchange.request_id,
                    method=exchange.method,
                    target=request_target(exchange),
                    recorded_status=exchange.status,
                    replayed_status=0,
                    error=f"{type(err).__name__}: {err}" if str(err) else type(err).__name__,
                )
            if difference is not None:
                differences.append(difference)
    return ReplayReport(
        app=app,
        ts=time.time(),
        serving_digest=serving_digest,
        replayed=replayed,
        differences=tuple(differences),
        skipped=skipped,
        unsafe_skipped=unsafe_skipped,
    )


def format_report(report: ReplayReport) -> list[str]:
    """The headless / second-terminal text of a replay."""
    short = report.serving_digest.split(":", 1)[-1][:12]
    lines = [
        f"{report.app}: replayed {report.replayed} recorded request(s) against {short}: "
        f"{len(report.differences)} differ"
        + (f", {report.skipped} skipped (body over the recording cap)" if report.skipped else "")
        + (
            f", {report.unsafe_skipped} not sent (methods other than GET/HEAD/OPTIONS change state; "
            "--all-methods sends them)"
            if report.unsafe_skipped
            else ""
        )
    ]
    for d in report.differences:
        status = f"{d.recorded_status} → {d.replayed_status or 'no response'}"
        lines.append(f"  {d.method} {d.target} [{d.request_id}] status {status}")
        if d.error:
            lines.append(f"    error: {d.error}")
        lines += [f"    {h}" for h in d.header_changes]
        lines += [f"    {line}" for line in d.body_diff.splitlines()]
    return lines
