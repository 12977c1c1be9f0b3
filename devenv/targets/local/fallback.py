"""Apps of serving processes that are gone for good, moved into wasmdev's own server.

When the serving processes (guest_procs.py) cannot be restarted, each app they served is built
again here from the ``Deploy`` they had (its frozen build and host API settings) and served by
the embedded server on the same listening socket. The move runs on the engine's loop (which is
also the server's, where the processes report) under the app's deploy lock, as a tracked task
``close()`` can cancel.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable

from devenv.model import BuiltApp
from devenv.targets.local.backend import InProcessBackend
from devenv.targets.local.deploy import VersionStager
from devenv.targets.local.guest_procs import GuestProcesses
from devenv.targets.local.messages import Deploy
from devenv.targets.local.ports import AppPorts
from devenv.targets.local.server import LocalServer
from devenv.targets.local.version_builder import VersionPlan

__all__ = ["ProcessFallback"]


class ProcessFallback:
    """Moves apps in from dead serving processes. ``deploy_locks`` is the target's own map, so
    a move and a deploy or remove of the same app never interleave; ``note`` writes a warning
    into an app's log."""

    def __init__(
        self,
        ports: AppPorts,
        deploy_locks: dict[str, asyncio.Lock],
        note: Callable[[str, str], None],
    ) -> None:
        self.ports = ports
        self.deploy_locks = deploy_locks
        self.note = note
        # The tasks moving apps in, kept here until done or cancelled.
        self.tasks: set[asyncio.Task[None]] = set()
        self._server: LocalServer | None = None
        self._stager: VersionStager | None = None
        self._processes: GuestProcesses | None = None

    def attach(self, server: LocalServer, stager: VersionStager, processes: GuestProcesses) -> None:
        """Where apps move from (``processes``) and to (``server``, building with ``stager``)."""
        self._server, self._stager, self._processes = server, stager, processes

    async def close(self) -> None:
        """Apps still moving in from dead serving processes: nothing left to serve them on."""
        self._server = self._stager = self._processes = None
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- the processes' callbacks ----------------------------------------------------------------

    def process_exited(self, text: str) -> None:
        """A serving process exited: say so in each app it served."""
        for app in self.ports.bound_apps():
            if self._processes is not None and self._processes.serves(app):
                self.note(app, text)

    def serve_here_now(self, apps: dict[str, Deploy]) -> None:
        """The serving processes are gone for good: serve their apps here, each from the Deploy
        the processes had (its frozen build and host API settings)."""
        why = self._processes.broken if self._processes is not None else None
        for app, deploy in apps.items():
            self.note(app, f"{why or 'serving processes are gone'}; serving this app from wasmdev's own process")
            # A task close() can cancel, whose failure is said in the app's log rather than lost.
            task = asyncio.get_running_loop().create_task(self._serve_here(app, deploy))
            self.tasks.add(task)
            task.add_done_callback(functools.partial(self._serving_here_done, app))

    def _serving_here_done(self, app: str, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        err = task.exception()
        if err is not None:
            self.note(app, f"could not serve this app from wasmdev's own process: {err}; save to retry")

    async def _serve_here(self, app: str, deploy: Deploy) -> None:
        """Under the app's deploy lock (so a deploy never interleaves with it, and a newer build
        is never replaced by this older one): build ``deploy``'s frozen build here and serve it
        on the app's port, unless a deploy or remove dealt with the app meanwhile."""
        async with self.deploy_locks.setdefault(app, asyncio.Lock()):
            server, stager, processes = self._server, self._stager, self._processes
            sock = self.ports.socket(app)
            if server is None or stager is None or processes is None or sock is None:
                return
            if not processes.serves(app):
                return  # a deploy or remove got there first
            built = deploy.built
            # A failure is said in the app's log by _serving_here_done; the next save retries.
            plan = await asyncio.to_thread(stager.build, built, f"{app}-{built.short_digest}", deploy.host_apis)
            if self._server is not server:
                plan.version.retire()  # closed meanwhile
                return
            await _take_over(server, processes, app, built, plan, sock)


async def _take_over(
    server: LocalServer,
    processes: GuestProcesses,
    app: str,
    built: BuiltApp,
    plan: VersionPlan,
    sock: socket.socket,
) -> None:
    """Move ``app`` in from the processes, unless a deploy or remove took it meanwhile."""
    if not processes.serves(app):
        plan.version.retire()
        return
    processes.forget(app)
    await InProcessBackend(server).serve(built, plan, sock)
