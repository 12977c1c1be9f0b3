"""Shared pieces for the local target's tests: the hello-wat guest built from its WAT source,
apps described in code, a started LocalTarget on free ports, and a real HTTP client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import pytest
import wasmtime

from devenv.config import LocalSettings, Settings
from devenv.model import AppSpec, BuiltApp, ComponentSpec, Executor, FileMount, HttpTrigger, Route
from devenv.store.store import Store
from devenv.targets.local.router import ServingVersion
from devenv.targets.local.target import LocalTarget

REPO = Path(__file__).resolve().parents[2]
HELLO_WAT = REPO / "sample-apps" / "hello-wat" / "hello.wat"


def hello_wasm(version: str = "v1") -> bytes:
    """The sample guest, with its greeting's version string replaced (both are 2 bytes long)."""
    assert len(version) == 2, "the data segment's length is fixed in the WAT"
    return bytes(wasmtime.wat2wasm(HELLO_WAT.read_text().replace("hello-wat v1!", f"hello-wat {version}!")))


def local_settings(
    tmp_path: Path, *, timeout_s: float = 5.0, memory_mb: int = 32, guest_processes: int = 2
) -> Settings:
    """``guest_processes`` is explicit (not the machine-dependent default): 2 runs WAGI guests in
    worker processes, as wasmdev does on any multi-core machine; 0 runs them on threads."""
    local = LocalSettings(
        host="127.0.0.1",
        base_port=0,  # tests pass explicit ports (0: any free one)
        request_timeout_s=timeout_s,
        memory_limit_mb=memory_mb,
        cache_dir=tmp_path / "cache",
        guest_processes=guest_processes,
    )
    return Settings(root=tmp_path, local=local)


@dataclass
class Comp:
    id: str = "hello"
    routes: Sequence[str] = ("/hello/...",)
    wasm: bytes | None = None  # default: hello_wasm()
    files: tuple[FileMount, ...] = ()
    environment: dict[str, str] | None = None
    executor: Executor = Executor.WAGI
    argv: str = "${SCRIPT_NAME} ${ARGS}"


def make_app(
    root: Path,
    comps: Sequence[Comp] = (Comp(),),
    *,
    name: str = "demo",
    http_base: str = "/",
    digest: str = "sha256:v1",
) -> BuiltApp:
    """Write each component's wasm under ``root`` and describe the app as spin.toml would."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "spin.toml").write_text("# described in code by the test\n")
    components = {}
    triggers = []
    wasm_paths = {}
    for c in comps:
        path = root / f"{c.id}.wasm"
        path.write_bytes(c.wasm if c.wasm is not None else hello_wasm())
        wasm_paths[c.id] = path
        components[c.id] = ComponentSpec(
            id=c.id, source=path, files=c.files, environment=MappingProxyType(dict(c.environment or {}))
        )
        triggers += [HttpTrigger(Route(r), c.id, c.executor, wagi_argv=c.argv) for r in c.routes]
    spec = AppSpec(
        name=name,
        manifest_path=root / "spin.toml",
        components=MappingProxyType(components),
        http_triggers=tuple(triggers),
        http_base=http_base,
    )
    return BuiltApp(spec=spec, digest=digest, wasm=MappingProxyType(wasm_paths), built_at=time.time())


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds: a fixed sleep is either slow or flaky on a busy machine."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out after {timeout}s waiting"
        await asyncio.sleep(0.01)


async def requests_reported(target: LocalTarget, count: int, app: str = "demo") -> None:
    """Wait until ``count`` requests of ``app`` are in the store. Serving processes report in
    batches a few milliseconds after the response; a request's output lines come before it."""
    await wait_until(lambda: len(target.store.metrics.requests(app)) >= count)


def serving_version(target: LocalTarget, app: str = "demo") -> ServingVersion:
    """The version of ``app`` new requests go to (its ``in_flight`` counts running requests)."""
    assert target._server is not None
    return target._server._versions[app]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str


class Client:
    def __init__(self, session: aiohttp.ClientSession, target: LocalTarget) -> None:
        self.session = session
        self.target = target

    def url(self, app: str, path: str) -> str:
        return f"http://127.0.0.1:{self.target.bound_port(app)}{path}"

    async def request(self, method: str, app: str, path: str, **kwargs: Any) -> Reply:
        async with self.session.request(method, self.url(app, path), allow_redirects=False, **kwargs) as r:
            return Reply(r.status, dict(r.headers), await r.text())

    async def get(self, app: str, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", app, path, **kwargs)


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture(params=[2, 0], ids=["guest-processes", "guest-threads"])
async def target(store: Store, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[LocalTarget]:
    """Each test that takes it runs twice: WAGI guests in worker processes, and on threads (the
    one-core default, and the fallback when processes cannot start)."""
    settings = local_settings(tmp_path, guest_processes=request.param)
    t = LocalTarget(store, settings, app_ports={"demo": 0, "other": 0}, workers=4)
    await t.start()
    yield t
    await t.close()


@pytest.fixture
async def client(target: LocalTarget) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, target)
