"""The apps the local target serves under an installed ``spin up`` instead of the embedded host.

``LocalTarget`` asks ``choose`` for every build (reading only the components' import and export
names, so a Spin 4 component is routed before the embedded host's minutes-long compile), and
hands the app here when Spin must serve it. Each such app has a ``SpinServer``: wasmdev keeps the
app's port and proxies to ``spin up``, so its request records, latency and logs reach the store
as an embedded app's do. This runs on the engine's loop; the embedded server has its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from devenv.model import BuiltApp, LogLine, RequestRecord
from devenv.targets.base import DeployResult
from devenv.targets.local.cgi import based_route, route_prefix
from devenv.targets.local.spin_cli import (
    MIN_SPIN,
    RuntimeChoice,
    SpinCli,
    app_worlds,
    choose_runtime,
    find_spin,
)
from devenv.targets.local.spin_runtime import SpinServer
from devenv.targets.local.wasm_kind import WasmKind


class SpinApps:
    def __init__(
        self,
        setting: str,
        host: str,
        *,
        on_log: Callable[[LogLine], None],
        on_request: Callable[[RequestRecord], None],
    ) -> None:
        self.setting = setting  # [local] runtime: auto | embedded | spin
        self.host = host
        self._on_log = on_log
        self._on_request = on_request
        self._spin: SpinCli | None = None
        self._looked = False
        self._servers: dict[str, SpinServer] = {}

    async def choose(self, built: BuiltApp) -> RuntimeChoice:
        """Which runtime serves ``built``; DeployError (with both fixes) when none can."""
        if not self._looked and self.setting != "embedded":
            # Looked up once per session, on the first build that may need it: `spin --version`
            # costs a process start, and a Spin installed later is found on the next `wasmdev up`.
            self._spin = await asyncio.to_thread(find_spin)
            self._looked = True
        choice = await asyncio.to_thread(choose_runtime, built, self.setting, self._spin)
        spin = self._spin
        if choice is RuntimeChoice.EMBEDDED and spin is not None and spin.spin_version >= MIN_SPIN:
            if self.setting == "auto" and await asyncio.to_thread(imports_beyond_the_embedded_host, built):
                return RuntimeChoice.SPIN
        return choice

    def serves(self, app: str) -> bool:
        return app in self._servers

    async def deploy(self, built: BuiltApp, port: int) -> tuple[DeployResult, int]:
        """Serve ``built`` under Spin on ``port`` (the old process serves until the new one
        answers); returns the result and the port bound. Raises DeployError, the previous
        build still serving."""
        app = built.spec.name
        assert self._spin is not None, "choose() picked Spin, so it was found"
        server = self._servers.get(app)
        if server is None:
            server = SpinServer(
                self._spin, app, port, host=self.host, on_log=self._on_log, on_request=self._on_request
            )
            await server.start()
            self._servers[app] = server
        try:
            await server.deploy(built)
        except BaseException:
            if server.serving_digest is None:  # never served: give the port back
                await self.remove(app)
            raise
        base = f"http://{self.host}:{server.port}"
        paths = dict.fromkeys(
            route_prefix(based_route(built.spec.http_base, t.route)) or "/" for t in built.spec.http_triggers
        )
        note = f"served by `spin up` ({self._spin.version}, {self._spin.path}): wasmdev's embedded host cannot run it"
        return DeployResult(urls=tuple(base + p for p in paths), notes=(note,)), server.port

    async def remove(self, app: str) -> None:
        server = self._servers.pop(app, None)
        if server is not None:
            await server.close()

    async def close(self) -> None:
        await asyncio.gather(*(self.remove(app) for app in list(self._servers)))


def imports_beyond_the_embedded_host(built: BuiltApp) -> bool:
    """Whether a component of ``built`` imports a host interface the embedded host never serves
    (MySQL, MQTT, LLM, ...), read from the binary's import names. Imports that only came with
    Spin's whole platform world (componentize-py imports all of it) do not count: the app may
    never call them, and the embedded host's inner loop is the faster one."""
    # Imported here: the host API tables load the Redis and PostgreSQL clients.
    from devenv.targets.local.spin.deploy import host_interfaces
    from devenv.targets.local.spin.imports import split_unhosted

    interfaces = host_interfaces()
    for world in app_worlds(built).values():
        if world.binary is not WasmKind.COMPONENT:
            continue  # a core module (WAGI) imports WASI preview 1, which the embedded host runs
        refused, _bundled = split_unhosted(world.imports, interfaces)
        if refused:
            return True
    return False
