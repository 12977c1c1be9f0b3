"""wasi:cli 0.2: stdio into the app's log, the manifest's environment only, exit, no terminal.

Spin gives a component exactly the ``environment`` its manifest declares, no arguments beyond
the program name, and stdout/stderr that end up in its log; stdin is empty.
"""

from __future__ import annotations

from typing import Any

from devenv.model import LogStream
from devenv.targets.local.wasi.host import GuestExit, HostContext, Kind
from devenv.targets.local.wasi.io import InputStream, LogSink, OutputStream
from devenv.targets.local.wasi.registry import Interface


def _get_environment(ctx: HostContext) -> list[tuple[str, str]]:
    return list(ctx.config.environment)


def _get_arguments(ctx: HostContext) -> list[str]:
    return [ctx.config.component_id]


def _initial_cwd(ctx: HostContext) -> None:
    return None


def _exit(ctx: HostContext, status: Any) -> None:
    success = getattr(status, "tag", "ok") == "ok"
    ctx.exit_success = success
    raise GuestExit(success)


def _get_stdin(ctx: HostContext) -> Any:
    return ctx.own(InputStream(b""))


def _get_stdout(ctx: HostContext) -> Any:
    if ctx.stdout is None:
        ctx.stdout = LogSink(ctx, LogStream.STDOUT)
    return ctx.own(OutputStream(ctx.stdout))


def _get_stderr(ctx: HostContext) -> Any:
    if ctx.stderr is None:
        ctx.stderr = LogSink(ctx, LogStream.STDERR)
    return ctx.own(OutputStream(ctx.stderr))


def _no_terminal(ctx: HostContext) -> None:
    return None  # option<terminal-*>: stdio is never a terminal here


def flush_stdio(ctx: HostContext) -> None:
    """Emit the last unterminated line of stdout/stderr at the end of a request."""
    for sink in (ctx.stdout, ctx.stderr):
        if sink is not None:
            sink.flush()


INTERFACES = [
    Interface(
        "wasi:cli/environment",
        functions={
            "get-environment": _get_environment,
            "get-arguments": _get_arguments,
            "initial-cwd": _initial_cwd,
        },
    ),
    Interface("wasi:cli/exit", functions={"exit": _exit}),
    Interface("wasi:cli/stdin", functions={"get-stdin": _get_stdin}),
    Interface("wasi:cli/stdout", functions={"get-stdout": _get_stdout}),
    Interface("wasi:cli/stderr", functions={"get-stderr": _get_stderr}),
    Interface("wasi:cli/terminal-input", resources={"terminal-input": Kind.TERMINAL_INPUT}),
    Interface("wasi:cli/terminal-output", resources={"terminal-output": Kind.TERMINAL_OUTPUT}),
    Interface("wasi:cli/terminal-stdin", functions={"get-terminal-stdin": _no_terminal}),
    Interface("wasi:cli/terminal-stdout", functions={"get-terminal-stdout": _no_terminal}),
    Interface("wasi:cli/terminal-stderr", functions={"get-terminal-stderr": _no_terminal}),
]
