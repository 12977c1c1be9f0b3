"""Where a checked build of an app serves: one ``ServingBackend`` interface, two implementations.

``LocalTarget`` builds and checks every build itself (deploy.py: stage, build the version,
clean up on failure), binds each app's port, and then hands the version to a backend:
``ProcessPoolBackend`` (the serving processes, guest_procs.py) when it can serve, else
``InProcessBackend`` (wasmdev's own ``LocalServer``). A backend swaps the new build in
atomically, or raises and leaves the previous one serving; ``BackendUnavailable`` means "try the
other one". Every method runs on the local server's loop: the one loop that touches sockets.
"""

from __future__ import annotations

import socket
from typing import Protocol

from devenv.errors import DeployError
from devenv.model import BuiltApp
from devenv.targets.local.guest_procs import GuestProcesses, ProcessDeployFailed, ProcessesUnavailable
from devenv.targets.local.server import LocalServer
from devenv.targets.local.version_builder import VersionPlan


class BackendUnavailable(Exception):
    """This backend cannot serve now (its message says why): serve the app with another."""


class ServingBackend(Protocol):
    name: str

    def serves(self, app: str) -> bool: ...

    async def serve(self, built: BuiltApp, plan: VersionPlan, sock: socket.socket) -> None:
        """Serve ``plan`` (checked from ``built``) on ``sock``, a listening socket the caller
        keeps: new requests get the new build once this returns. Raises BackendUnavailable or
        DeployError, the previous build of the app still serving."""
        ...

    async def remove(self, app: str) -> None: ...

    def set_recording(self, on: bool) -> None: ...

    async def stop(self) -> None: ...


class InProcessBackend:
    name = "in-process"

    def __init__(self, server: LocalServer) -> None:
        self.server = server

    def serves(self, app: str) -> bool:
        return self.server.serves(app)

    async def serve(self, built: BuiltApp, plan: VersionPlan, sock: socket.socket) -> None:
        app = built.spec.name
        # The version first, then the port: a connection accepted in between (the app moving
        # in from the processes, say) must find a version to serve.
        await self.server.swap(app, plan.version)
        await self.server.listen(app, sock.getsockname()[1], sock=sock.dup())

    async def remove(self, app: str) -> None:
        await self.server.remove(app)

    def set_recording(self, on: bool) -> None:
        self.server.recording = on

    async def stop(self) -> None:
        """The server itself is stopped by its owner (LocalTarget.close), off this loop."""


class ProcessPoolBackend:
    name = "serving processes"

    def __init__(self, processes: GuestProcesses) -> None:
        self.processes = processes

    def serves(self, app: str) -> bool:
        return self.processes.serves(app)

    async def serve(self, built: BuiltApp, plan: VersionPlan, sock: socket.socket) -> None:
        """``built`` must not change on disk afterwards (``freeze_wasm``): a replacement
        process builds it again. ``plan`` was only the check: its staged files go now."""
        app = built.spec.name
        try:
            await self.processes.deploy(app, built, sock, plan.host_apis)
        except ProcessesUnavailable as err:
            raise BackendUnavailable(str(err)) from None
        except ProcessDeployFailed as err:
            raise DeployError(
                what=f"a serving process could not deploy this build: {err}",
                where=f"app `{app}` on the local target",
                fix="save again to redeploy; the previous version keeps serving",
            ) from None
        plan.version.retire()

    async def remove(self, app: str) -> None:
        await self.processes.remove(app)

    def set_recording(self, on: bool) -> None:
        self.processes.set_recording(on)

    async def stop(self) -> None:
        await self.processes.stop()
