"""A component built for Spin 3's world (spin:up/http-trigger@3.4.0, tests/apps/spin3-apis-py)
is hosted: wasi:keyvalue store/atomics/batch at 0.2.0-draft2, wasi:config/store at
0.2.0-draft-2024-09-27 and spin:sqlite/sqlite@3.0.0, over the real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from devenv.targets.local.runtime import WasmRuntime
from tests.targets.spin_apps import SpinServing, app_wasm, copy_app

pytestmark = pytest.mark.slow

APP = "spin3-apis-py"


@pytest.fixture(scope="module")
def runtime() -> Iterator[WasmRuntime]:
    rt = WasmRuntime()
    yield rt
    rt.close()


@pytest.fixture
async def serving(runtime: WasmRuntime, tmp_path: Path) -> AsyncIterator[SpinServing]:
    s = SpinServing(runtime)
    await s.listen(APP)
    await s.deploy(copy_app(APP, tmp_path), {APP: app_wasm(APP)}, env={"SPIN_VARIABLE_COLOUR": "grey"})
    yield s
    s.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        yield session


async def get(
    http: aiohttp.ClientSession, serving: SpinServing, path: str, method: str = "GET", data: bytes = b""
):
    async with http.request(method, serving.url(path), data=data) as r:
        return r.status, await r.json()


async def test_wasi_config_store(serving: SpinServing, http: aiohttp.ClientSession) -> None:
    assert await get(http, serving, "/config/sentence") == (200, "the sky is grey")
    assert await get(http, serving, "/config/nope") == (200, None)  # undefined: none, as Spin
    assert await get(http, serving, "/config") == (200, [["colour", "grey"], ["sentence", "the sky is grey"]])


async def test_wasi_keyvalue_store_atomics_batch(serving: SpinServing, http: aiohttp.ClientSession) -> None:
    assert await get(http, serving, "/kv/default/k", "PUT", b"\x00\xffv") == (200, "00ff76")
    assert await get(http, serving, "/kv/default") == (200, ["k"])
    assert await get(http, serving, "/kv/other/k") == (500, {"error": "Error_AccessDenied"})
    assert await get(http, serving, "/incr/n", "POST") == (200, 5)
    assert await get(http, serving, "/incr/n", "POST") == (200, 10)
    assert await get(http, serving, "/batch", "POST") == (200, [["a", "1"], ["b", "2"], ["c", None]])


async def test_spin_sqlite_3(serving: SpinServing, http: aiohttp.ClientSession) -> None:
    assert await get(http, serving, "/sql", "POST") == (200, {"rowid": 2, "changes": 2})
    assert await get(http, serving, "/sql", "POST") == (200, {"rowid": 4, "changes": 2})


async def test_a_spin3_era_sdk_app_with_its_pinned_toolchain(runtime: WasmRuntime, tmp_path: Path) -> None:
    # tests/apps/spin3-sdk-py pins spin-sdk 3.4.1 + componentize-py 0.17.2 and builds with
    # `-w spin-http`, as the Spin 3 templates do; it uses the SDK's high-level modules.
    name = "spin3-sdk-py"
    s = SpinServing(runtime)
    await s.listen(name)
    try:
        await s.deploy(copy_app(name, tmp_path), {name: app_wasm(name)}, env={"SPIN_VARIABLE_WHO": "spin 3"})
        async with aiohttp.ClientSession() as http:
            async with http.get(s.url("/var")) as r:
                assert (r.status, await r.text()) == (200, "hello, spin 3")
            async with http.put(s.url("/kv"), data=b"\x01\x02") as r:
                assert (r.status, await r.read()) == (200, b"\x01\x02")
    finally:
        s.stop()


async def test_wasi_keyvalue_compare_and_swap(serving: SpinServing, http: aiohttp.ClientSession) -> None:
    status, out = await get(http, serving, "/cas", "POST")
    assert (status, out) == (200, {"seen": "old", "second": "CasError_CasFailed", "now": "changed meanwhile"})
