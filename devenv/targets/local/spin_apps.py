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
from devenv.targets.local.spin_cli import RuntimeChoice, SpinCli, choose_runtime, find_spin
from devenv.targets.local.spin_runtime import SpinServer


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
        return await asyncio.to_thread(choose_runtime, built, self.setting, self._spin)

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
