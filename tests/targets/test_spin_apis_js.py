"""Spin's host APIs from a real JavaScript component (tests/apps/spin-apis-js: npm
@spinframework/build-tools 1.0.7, componentize-js, the fetch-event style of the http-js
template), served by the real server over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from devenv.model import AppSpec
from devenv.targets.local.runtime import WasmRuntime
from tests.targets.spin_apps import SpinServing, app_wasm, copy_app

pytestmark = pytest.mark.slow

APP = "spin-apis-js"


@pytest.fixture(scope="module")
def runtime() -> Iterator[WasmRuntime]:
    rt = WasmRuntime()
    yield rt
    rt.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        yield session


async def serve(runtime: WasmRuntime, app: AppSpec) -> SpinServing:
    s = SpinServing(runtime)
    await s.listen(APP)
    await s.deploy(app, {APP: app_wasm(APP)})
    return s


async def test_js_variables_key_value_and_persistence(
    runtime: WasmRuntime, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    value = bytes(range(256)) * 2
    app = copy_app(APP, tmp_path)
    first = await serve(runtime, app)
    try:
        async with http.get(first.url("/var/message")) as r:
            assert (r.status, await r.text()) == (200, "Hello from JavaScript")
        async with http.put(first.url("/kv/default/bin"), data=value) as r:
            assert r.status == 204
        async with http.get(first.url("/kv/default/bin")) as r:
            assert (r.status, await r.read()) == (200, value)
        async with http.get(first.url("/kv/nope/x")) as r:
            assert (r.status, await r.json()) == (500, {"error": "access-denied"})
    finally:
        first.stop()
    second = await serve(runtime, app)  # a restart: the default store is on disk in .spin/
    try:
        async with http.get(second.url("/kv/default")) as r:
            assert await r.json() == ["bin"]
        async with http.get(second.url("/kv/default/bin")) as r:
            assert await r.read() == value
    finally:
        second.stop()


async def test_js_sqlite(runtime: WasmRuntime, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    s = await serve(runtime, copy_app(APP, tmp_path))
    try:

        async def sql(statement: str, *params: list) -> tuple[int, dict]:
            body = json.dumps({"sql": statement, "params": params})
            async with http.post(s.url("/sql/default"), data=body) as r:
                return r.status, await r.json()

        assert (await sql("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, n)"))[0] == 200
        await sql(
            "INSERT INTO t VALUES (?, ?, ?, ?)", ["int", 42], ["text", "jé"], ["blob", "0aff"], ["null", None]
        )
        status, out = await sql("SELECT * FROM t")
        assert out == {
            "columns": ["i", "s", "b", "n"],
            "rows": [[["int", 42], ["text", "jé"], ["blob", "0aff"], ["null", None]]],
        }
        status, out = await sql("SELEKT")
        assert (status, out["error"]) == (500, "io")
    finally:
        s.stop()
