"""Running an app's build commands, as ``spin build`` does, and turning the result into a BuiltApp.

Each component's ``[component.NAME.build]`` commands run in order through the shell, in the
component's workdir, with the output streamed line by line into the store (LogStream.BUILD).
Commands run in the user's environment, as Spin runs them: the user's PATH and virtualenv, so
``python`` or ``componentize-py`` in a build command is the one the user's shell would run (an
app that pins its toolchain in its virtualenv is built with those pins, not with wasmdev's).

A build that fails, times out or does not produce a component's ``source`` raises ``BuildError``
after dispatching ``BuildFailed``; the caller keeps the previous version serving. Its summary is
the output line that names the cause (build_output.py); a tool that is not installed is named,
with the command that installs it. A build cancelled (a newer save) kills its whole process
group, so a hung compiler never outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from devenv.engine.build_output import BuildOutput, read_lines
from devenv.errors import BuildError
from devenv.model import AppSpec, BuiltApp, ComponentSpec, LogLine, LogStream
from devenv.store import actions as a
from devenv.store.store import Store


def build_env() -> dict[str, str]:
    """The environment build commands run in: the user's, PATH untouched (as ``spin build``)."""
    env = dict(os.environ)
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
        output = BuildOutput()
        current = ""  # the command running, named in BuildFailed
        try:
            for component, command in build_commands(spec):
                assert component.build is not None  # build_commands only yields components with one
                current = command
                await self._run(spec, component, command, component.build.workdir, output)
            wasm = _component_sources(spec)
            digest = await asyncio.to_thread(app_digest, spec.manifest_path, wasm.items())
        except BuildError as err:
            self.store.dispatch(
                a.BuildFailed(
                    app=spec.name,
                    command=current or describe_commands(spec),
                    output=output.text(),
                    error=str(err),
                    ts=time.time(),
                )
            )
            raise
        built = BuiltApp(spec=spec, digest=digest, wasm=wasm, built_at=time.time(), trigger_time=trigger_time)
        self.store.dispatch(a.BuildSucceeded(app=spec.name, built=built, ts=built.built_at))
        return built

    async def _run(
        self, spec: AppSpec, component: ComponentSpec, command: str, workdir: Path, output: BuildOutput
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
        )
        try:
            await asyncio.wait_for(self._stream(spec, component, proc, output), self.timeout_s)
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
            if output.missing is not None:
                raise _error(
                    spec,
                    command,
                    f"build command exited with code {code}: {output.missing.what}",
                    f"{output.missing.fix}; then save or press r (the command ran in {workdir})",
                )
            summary = output.summary()
            raise _error(
                spec,
                command,
                f"build command exited with code {code}" + (f": {summary}" if summary else ""),
                f"fix the error shown in the build output, then save (the command ran in {workdir})",
            )

    async def _stream(
        self, spec: AppSpec, component: ComponentSpec, proc: asyncio.subprocess.Process, output: BuildOutput
    ) -> None:
        assert proc.stdout is not None
        async for line in read_lines(proc.stdout):
            output.add(line)
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
