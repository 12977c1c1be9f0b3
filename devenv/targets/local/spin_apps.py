"""The apps the local target serves under an installed ``spin up`` instead of the embedded host.

``LocalTarget`` asks ``choose`` for every build (reading only the components' import and export
names, so a Spin 4 component is routed before the embedded host's minutes-long compile), and
hands the app here when Spin must serve it. Each such app has a ``SpinServer``: wasmdev keeps the
app's port and proxies to ``spin up``, so its request records, latency and logs reach the store
as an embedded app's do. This runs on the engine's loop; the embedded server has its own.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from devenv.component_world import ComponentWorld
from devenv.model import BuiltApp, LogLine, RecordedExchange, RequestRecord
from devenv.targets.base import DeployResult
from devenv.targets.local.cgi import based_route, route_prefix
from devenv.targets.local.spin_cli import (
    RuntimeChoice,
    SpinCli,
    choose_runtime,
    find_spin,
)
from devenv.targets.local.spin_runtime import SpinServer, closed_error
from devenv.targets.local.wasm_kind import WasmKind


class SpinApps:
    def __init__(
        self,
        setting: str,
        host: str,
        *,
        on_log: Callable[[LogLine], None],
        on_request: Callable[[RequestRecord], None],
        on_exchange: Callable[[RecordedExchange], None] | None = None,
        request_timeout_s: float = 30.0,
        record_body_bytes: int = 1024 * 1024,
        runtime_config: Path | None = None,
    ) -> None:
        """``runtime_config``: Spin's runtime config file, absolute (``[local] runtime_config``
        resolved against the workspace), handed to every ``spin up``."""
        self.setting = setting  # [local] runtime: auto | embedded | spin
        self.host = host
        self.request_timeout_s = request_timeout_s
        self.record_body_bytes = record_body_bytes
        self.runtime_config = runtime_config
        self._on_log = on_log
        self._on_request = on_request
        self._on_exchange = on_exchange
        self._spin: SpinCli | None = None
        self._looked = False
        self._recording = False
        self._closed = False
        self._servers: dict[str, SpinServer] = {}
        self._starting: dict[str, SpinServer] = {}  # made by a deploy in flight, not serving yet

    async def choose(self, built: BuiltApp) -> RuntimeChoice:
        """Which runtime serves ``built``; DeployError (with both fixes) when none can."""
        if not self._looked and self.setting != "embedded":
            # Looked up once per session, on the first build that may need it: `spin --version`
            # costs a process start, and a Spin installed later is found on the next `wasmdev up`.
            self._spin = await asyncio.to_thread(find_spin)
            self._looked = True
        return await asyncio.to_thread(
            choose_runtime, built, self.setting, self._spin, needs_spin=imports_beyond_the_embedded_host
        )

    def serves(self, app: str) -> bool:
        return app in self._servers

    def port(self, app: str) -> int:
        """The port ``app`` is served on (it must be served here)."""
        return self._servers[app].port

    def set_recording(self, on: bool) -> None:
        """Record real requests of every app served here, and of those served later."""
        self._recording = on
        for server in (*self._servers.values(), *self._starting.values()):
            server.recording = on

    async def deploy(
        self,
        built: BuiltApp,
        port: int,
        *,
        release: Callable[[], Awaitable[socket.socket | None]] | None = None,
    ) -> tuple[DeployResult, int]:
        """Serve ``built`` under Spin on ``port``; returns the result and the port bound.

        For an app not served here yet, ``spin up`` must answer on its private port before
        ``release`` runs: it stops whatever served the app before and hands over its listening
        socket for ``port`` (or None: the port is bound anew), so a `spin up` that fails leaves
        the previous version serving. A redeploy keeps the old process serving until the new
        one answers. Raises DeployError, the previous version still serving; TargetUnavailable
        once ``close()`` ran."""
        app = built.spec.name
        if self._closed:
            raise closed_error(app)
        assert self._spin is not None, "choose() picked Spin, so it was found"
        server = self._servers.get(app)
        if server is not None:
            await server.deploy(built)
        else:
            server = self._starting[app] = self._new_server(app, port)
            try:
                await server.deploy(built)
                await server.start(await release() if release is not None else None)
                if self._closed:
                    raise closed_error(app)
            except BaseException:
                await server.close()
                raise
            finally:
                self._starting.pop(app, None)
            self._servers[app] = server
        base = f"http://{self.host}:{server.port}"
        paths = dict.fromkeys(
            route_prefix(based_route(built.spec.http_base, t.route)) or "/" for t in built.spec.http_triggers
        )
        note = f"served by `spin up` ({self._spin.version}, {self._spin.path}): wasmdev's embedded host cannot run it"
        return DeployResult(urls=tuple(base + p for p in paths), notes=(note,)), server.port

    def _new_server(self, app: str, port: int) -> SpinServer:
        assert self._spin is not None
        server = SpinServer(
            self._spin,
            app,
            port,
            host=self.host,
            on_log=self._on_log,
            on_request=self._on_request,
            on_exchange=self._on_exchange,
            request_timeout_s=self.request_timeout_s,
            record_body_bytes=self.record_body_bytes,
            runtime_config=self.runtime_config,
        )
        server.recording = self._recording
        return server

    async def hand_over(self, app: str) -> socket.socket:
        """Stop serving ``app`` (served here) and return its port's listening socket, still
        open: the embedded host takes the port over without refusing a connection."""
        server = self._servers.pop(app)
        sock = server.hand_over()
        await server.close()
        return sock

    async def remove(self, app: str) -> None:
        server = self._servers.pop(app, None)
        if server is not None:
            await server.close()

    async def close(self) -> None:
        """Stop every ``spin up``, those a deploy in flight started too; later deploys fail."""
        self._closed = True
        servers = [*self._servers.values(), *self._starting.values()]
        self._servers.clear()
        await asyncio.gather(*(server.close() for server in servers))


def imports_beyond_the_embedded_host(worlds: Mapping[str, ComponentWorld]) -> bool:
    """Whether a component imports a host interface the embedded host never serves (LLM
    inferencing, ...), read from the binary's import names. Imports that only came with Spin's
    whole platform world (componentize-py imports all of it) do not count: the app may never
    call them, and the embedded host's inner loop is the faster one."""
    # Imported here: the host API tables load the Redis, PostgreSQL, MySQL and MQTT clients.
    from devenv.targets.local.spin.deploy import host_interfaces
    from devenv.targets.local.spin.imports import split_unhosted

    interfaces = host_interfaces()
    for world in worlds.values():
        if world.binary is not WasmKind.COMPONENT:
            continue  # a core module (WAGI) imports WASI preview 1, which the embedded host runs
        refused, _bundled = split_unhosted(world.imports, interfaces)
        if refused:
            return True
    return False
