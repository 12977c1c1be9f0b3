"""Running an app's build commands, as ``spin build`` does, and turning the result into a BuiltApp.

Each component's ``[component.NAME.build]`` commands run in order through the shell, in the
component's workdir, with the output streamed line by line into the store (LogStream.BUILD). The
directory of the interpreter wasmdev runs on comes first on PATH, so a sample's ``python -m
ziglang`` means the Python that has ziglang installed, whatever the user's shell has.

A build that fails, times out or does not produce a component's ``source`` raises ``BuildError``
after dispatching ``BuildFailed``; the caller keeps the previous version serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from devenv.errors import BuildError
from devenv.model import AppSpec, BuiltApp, ComponentSpec, LogLine, LogStream
from devenv.store import actions as a
from devenv.store.store import Store

OUTPUT_TAIL_LINES = 60  # what a failure shows: compilers print the summary last
_READ_LIMIT = 1 << 20  # a single output line longer than this is split, not an error


def build_env() -> dict[str, str]:
    """The environment build commands run in: ours, with our interpreter's directory first on PATH."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    path = env.get("PATH", "")
    if path.split(os.pathsep)[:1] != [bin_dir]:
        env["PATH"] = bin_dir + (os.pathsep + path if path else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def build_commands(spec: AppSpec) -> list[tuple[ComponentSpec, str]]:
    """Every (component, command) of the app, in manifest order then command order."""
    return [
        (component, command)
        for component in spec.components.values()
        if component.build is not None
        for command in component.build.command
    ]


def describe_commands(spec: AppSpec) -> str:
    commands = [command for _, command in build_commands(spec)]
    return " && ".join(commands) if commands else "(no build command: hashing sources)"


class Builder:
    """Builds apps and reports each step to the store. One Builder serves every app."""

    def __init__(self, store: Store, *, timeout_s: float = 600.0) -> None:
        self.store = store
        self.timeout_s = timeout_s

    async def build(self, spec: AppSpec, trigger_time: float | None = None) -> BuiltApp:
        """Run the app's build commands and hash the result. Raises BuildError (already reported)."""
        started = time.time()
        self.store.dispatch(a.BuildStarted(app=spec.name, command=describe_commands(spec), ts=started))
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        current = ""  # the command running, named in BuildFailed
        try:
            for component, command in build_commands(spec):
                assert component.build is not None  # build_commands only yields components with one
                current = command
                await self._run(spec, component, command, component.build.workdir, tail)
            wasm = _component_sources(spec)
            digest = await asyncio.to_thread(app_digest, spec.manifest_path, wasm.items())
        except BuildError as err:
            self.store.dispatch(
                a.BuildFailed(
                    app=spec.name,
                    command=current or describe_commands(spec),
                    output="\n".join(tail),
                    error=str(err),
                    ts=time.time(),
                )
            )
            raise
        built = BuiltApp(spec=spec, digest=digest, wasm=wasm, built_at=time.time(), trigger_time=trigger_time)
        self.store.dispatch(a.BuildSucceeded(app=spec.name, built=built, ts=built.built_at))
        return built

    async def _run(
        self, spec: AppSpec, component: ComponentSpec, command: str, workdir: Path, tail: deque[str]
    ) -> None:
        if not workdir.is_dir():
            raise _error(
                spec,
                command,
                f"build workdir {workdir} does not exist",
                f"create it, or fix `workdir` in [component.{component.id}.build] of {spec.manifest_path}",
            )
        self._log(spec, component, f"$ {command}")
        # A new session (process group) so a timeout or shutdown kills the compiler the shell
        # started too, not only the shell.
        proc = await asyncio.create_subprocess_shell(
            command,
            cwd=workdir,
            env=build_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            limit=_READ_LIMIT,
        )
        try:
            await asyncio.wait_for(self._stream(spec, component, proc, tail), self.timeout_s)
            code = await proc.wait()
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            raise _error(
                spec,
                command,
                f"build timed out after {self.timeout_s:g} s",
                "make the build faster, or raise build_timeout_s in wasmdev.toml",
            ) from None
        except asyncio.CancelledError:
            _kill_group(proc)
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
            raise
        if code != 0:
            last = next((line for line in reversed(tail) if line.strip() and not line.startswith("$ ")), "")
            raise _error(
                spec,
                command,
                f"build command exited with code {code}" + (f": {last.strip()}" if last else ""),
                f"fix the error shown in the build output, then save (the command ran in {workdir})",
            )

    async def _stream(
        self, spec: AppSpec, component: ComponentSpec, proc: asyncio.subprocess.Process, tail: deque[str]
    ) -> None:
        assert proc.stdout is not None
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:  # a line over the limit: take what is buffered as one chunk
                raw = await proc.stdout.read(_READ_LIMIT)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            tail.append(line)
            self._log(spec, component, line)

    def _log(self, spec: AppSpec, component: ComponentSpec, text: str) -> None:
        self.store.dispatch(
            a.LogEmitted(
                LogLine(
                    ts=time.time(), app=spec.name, stream=LogStream.BUILD, text=text, component=component.id
                )
            )
        )


def _error(spec: AppSpec, command: str, what: str, fix: str) -> BuildError:
    where = f"app {spec.name}" + (f", command `{command}`" if command else "")
    return BuildError(what=what, where=where, fix=fix)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _component_sources(spec: AppSpec) -> dict[str, Path]:
    """component id -> wasm, checking each local source exists (a build must have written it)."""
    wasm: dict[str, Path] = {}
    for component in spec.components.values():
        if component.source is None:  # a URL source: nothing local to check or hash
            continue
        if not component.source.is_file():
            builds = component.build is not None
            raise _error(
                spec,
                " && ".join(component.build.command) if component.build else "",
                f"component `{component.id}`: source {component.source} does not exist"
                + (" after the build" if builds else ""),
                (
                    "make the build command write that file, or point `source` at what it writes"
                    if builds
                    else f"build it first, or fix `source` in [component.{component.id}] of {spec.manifest_path}"
                ),
            )
        wasm[component.id] = component.source
    return wasm


def app_digest(manifest_path: Path, wasm: Iterable[tuple[str, Path]]) -> str:
    """sha256 over the manifest bytes and each component's wasm (with its id, in a stable order)."""
    h = hashlib.sha256()
    h.update(manifest_path.read_bytes())
    for component_id, path in sorted(wasm):
        h.update(b"\0component\0" + component_id.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()
