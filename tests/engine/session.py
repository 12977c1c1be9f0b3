"""A real dev loop on a temp workspace for tests: real config, manifests, builds, watchfiles,
the real local target on a free loopback port, and real HTTP requests to it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from devenv.config import load_workspace
from devenv.engine.devloop import DevLoop
from devenv.model import EngineState
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.local.target import LocalTarget

WAIT_S = 60.0  # a generous bound for "this eventually happens"; never a speed assertion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Session:
    store: Store
    loop: DevLoop
    actions: list[a.Action] = field(default_factory=list)

    def count(self, kind: type[a.Action], app: str) -> int:
        return sum(1 for x in list(self.actions) if isinstance(x, kind) and getattr(x, "app", None) == app)

    async def wait(
        self, predicate: Callable[[EngineState], bool], what: str, timeout: float = WAIT_S
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.store.state):
            if time.monotonic() > deadline:
                apps = {n: (s.status, s.build.status, s.error) for n, s in self.store.state.apps.items()}
                logs = [f"{x.app} {x.stream}: {x.text}" for x in self.store.logs.tail(30)]
                raise AssertionError(f"timed out waiting for {what}; apps={apps}\n" + "\n".join(logs))
            await asyncio.sleep(0.02)

    def url(self, app: str) -> str:
        urls = self.store.state.apps[app].urls
        assert urls, f"{app} has no URL"
        return urls[0]

    async def get(self, app: str, suffix: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.get(self.url(app) + suffix, headers=headers)

    async def wait_body(self, app: str, text: str, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        body = ""
        while time.monotonic() < deadline:
            if self.store.state.apps.get(app) and self.store.state.apps[app].urls:
                # Polls are the test's own traffic, not the app's: kept out of its recordings.
                body = (await self.get(app, headers={"x-wasmdev-replay": "1"})).text
                if text in body:
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{app} never served {text!r}; last body {body!r}")


@asynccontextmanager
async def dev_session(root: Path, cache_dir: Path, **overrides: object) -> AsyncIterator[Session]:
    workspace = load_workspace(root)
    settings = workspace.settings.with_overrides(
        local_base_port=free_port(), local_cache_dir=str(cache_dir), **overrides
    )
    workspace = replace(workspace, settings=settings)
    store = Store()
    target = LocalTarget(store, settings)
    loop = DevLoop(store, workspace, target)
    session = Session(store, loop)
    store.subscribe(lambda _s, action: session.actions.append(action))
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(loop.ready.wait(), WAIT_S)
        yield session
    finally:
        loop.stop()
        await asyncio.wait_for(task, WAIT_S)
