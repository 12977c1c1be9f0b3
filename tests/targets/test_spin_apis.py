"""Spin's host APIs on the local target: a real Python component (spin-sdk, world
fermyon:spin/http-trigger@2.0.0, tests/apps/spin-apis-py) calling variables, key-value and SQLite
through the SDK's own bindings, served by the real server over real HTTP."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from devenv.errors import DeployError
from devenv.manifest import load_app
from devenv.model import AppSpec
from devenv.runtime_config import load_runtime_config
from devenv.targets.local.runtime import WasmRuntime
from tests.targets.component_builds import SAMPLES, sample_wasm
from tests.targets.spin_apps import SpinServing, app_wasm, copy_app

pytestmark = pytest.mark.slow

APP = "spin-apis-py"
SECRET = "s3cr3t-token-value"


@pytest.fixture(scope="module")
def runtime() -> Iterator[WasmRuntime]:
    rt = WasmRuntime()
    yield rt
    rt.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        yield session


@pytest.fixture
async def serving(runtime: WasmRuntime) -> AsyncIterator[SpinServing]:
    s = SpinServing(runtime)
    await s.listen(APP)
    yield s
    s.stop()


async def deploy(serving: SpinServing, app: AppSpec, env: dict[str, str] | None = None, **kw: object) -> None:
    await serving.deploy(
        app, {APP: app_wasm(APP)}, env={"SPIN_VARIABLE_API_TOKEN": SECRET} if env is None else env, **kw
    )


async def test_variables_resolve_as_spin_does(
    serving: SpinServing, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    app = copy_app(APP, tmp_path)
    await deploy(serving, app, env={"SPIN_VARIABLE_API_TOKEN": SECRET, "SPIN_VARIABLE_REGION": "us-west"})
    async with http.get(serving.url("/var/message")) as r:
        # default for greeting, the environment over the default for region, text between
        assert (r.status, await r.text()) == (200, "Hello, world from us-west!")
    async with http.get(serving.url("/var/token")) as r:
        assert await r.text() == SECRET
    async with http.get(serving.url("/var/plain")) as r:
        assert await r.text() == "no templates here"
    async with http.get(serving.url("/var/greeting")) as r:  # an app variable the component lacks
        assert r.status == 500
        assert (await r.json())["error"] == "Error_Undefined"
    async with http.get(serving.url("/var/Bad-Name")) as r:
        assert (await r.json())["error"] == "Error_InvalidName"
    assert SECRET not in serving.recorder.text()


async def test_missing_required_variable_fails_the_deploy_and_keeps_the_old_version(
    serving: SpinServing, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    app = copy_app(APP, tmp_path)
    await deploy(serving, app)
    with pytest.raises(DeployError) as caught:
        await deploy(serving, app, env={})
    err = caught.value
    assert "api_token" in err.what and "required" in err.what
    assert "SPIN_VARIABLE_API_TOKEN" in err.fix
    async with http.get(serving.url("/var/token")) as r:  # the first version still serves
        assert await r.text() == SECRET


async def test_key_value_is_byte_exact_and_persists_in_dot_spin(
    runtime: WasmRuntime, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    app = copy_app(APP, tmp_path)
    value = bytes(range(256)) * 3
    first = SpinServing(runtime)
    await first.listen(APP)
    try:
        await deploy(first, app)
        async with http.put(first.url("/kv/default/blob"), data=value) as r:
            assert r.status == 204
        async with http.put(first.url("/kv/default/other"), data=b"x") as r:
            assert r.status == 204
        async with http.get(first.url("/kv/default/blob")) as r:
            assert (r.status, await r.read()) == (200, value)
        async with http.get(first.url("/kv/default/missing")) as r:
            assert r.status == 404
        async with http.delete(first.url("/kv/default/other")) as r:
            assert r.status == 204
    finally:
        first.stop()
    # Spin's own layout: .spin/sqlite_key_value.db, table spin_key_value(store, key, value)
    db = app.root / ".spin" / "sqlite_key_value.db"
    rows = sqlite3.connect(db).execute("SELECT store, key, value FROM spin_key_value").fetchall()
    assert rows == [("default", "blob", value)]
    # a new server (a restart of wasmdev up) reads what the first one wrote
    second = SpinServing(runtime)
    await second.listen(APP)
    try:
        await deploy(second, app)
        async with http.get(second.url("/kv/default/blob")) as r:
            assert (r.status, await r.read()) == (200, value)
        async with http.get(second.url("/kv/default")) as r:
            assert await r.json() == ["blob"]
    finally:
        second.stop()


async def test_an_ungranted_store_is_access_denied_not_a_trap(
    serving: SpinServing, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    app = copy_app(APP, tmp_path)
    await deploy(serving, app)
    async with http.get(serving.url("/kv/cache/x")) as r:
        assert r.status == 500
        assert (await r.json())["error"] == "Error_AccessDenied"
    assert "key-value store `cache` opened but not granted" in serving.recorder.text()
    async with http.get(serving.url("/plain")) as r:  # the component keeps serving
        assert r.status == 200


async def test_a_label_without_a_store_fails_the_deploy_naming_it(
    serving: SpinServing, tmp_path: Path
) -> None:
    manifest = (Path(__file__).parents[1] / "apps" / APP / "spin.toml").read_text()
    manifest = manifest.replace('key_value_stores = ["default"]', 'key_value_stores = ["default", "cache"]')
    app = copy_app(APP, tmp_path, manifest)
    with pytest.raises(DeployError) as caught:
        await deploy(serving, app)
    assert "`cache`" in caught.value.what and "--runtime-config-file" in caught.value.fix


async def test_a_runtime_config_store_serves_its_label(
    serving: SpinServing, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manifest = (Path(__file__).parents[1] / "apps" / APP / "spin.toml").read_text()
    manifest = manifest.replace('key_value_stores = ["default"]', 'key_value_stores = ["default", "cache"]')
    app = copy_app(APP, tmp_path, manifest)
    config_file = tmp_path / "runtime-config.toml"
    config_file.write_text('[key_value_store.cache]\ntype = "spin"\npath = "data/cache.db"\n')
    await deploy(serving, app, runtime_config=load_runtime_config(config_file))
    async with http.put(serving.url("/kv/cache/k"), data=b"in the cache") as r:
        assert r.status == 204
    async with http.get(serving.url("/kv/default/k")) as r:  # another store: not there
        assert r.status == 404
    rows = sqlite3.connect(tmp_path / "data" / "cache.db").execute(
        "SELECT store, key, value FROM spin_key_value"
    )
    assert rows.fetchall() == [("cache", "k", b"in the cache")]


async def sql(
    http: aiohttp.ClientSession, serving: SpinServing, db: str, statement: str, *params: list
) -> dict:
    async with http.post(
        serving.url(f"/sql/{db}"), data=json.dumps({"sql": statement, "params": params})
    ) as r:
        return {"status": r.status, **(await r.json())}


async def test_sqlite_values_rows_and_errors(
    serving: SpinServing, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    app = copy_app(APP, tmp_path)
    await deploy(serving, app)
    created = await sql(http, serving, "default", "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)")
    assert created == {"status": 200, "columns": [], "rows": []}
    inserted = await sql(
        http,
        serving,
        "default",
        "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
        ["int", -(2**63)],
        ["real", 2.5],
        ["text", "héllo"],
        ["blob", "00ff10"],
        ["null", None],
    )
    assert inserted["status"] == 200
    rows = await sql(http, serving, "default", "SELECT i, r, s, b, n FROM t WHERE s = ?", ["text", "héllo"])
    assert rows["columns"] == ["i", "r", "s", "b", "n"]
    assert rows["rows"] == [
        [["int", -(2**63)], ["real", 2.5], ["text", "héllo"], ["blob", "00ff10"], ["null", None]]
    ]
    bad = await sql(http, serving, "default", "SELEKT nonsense")
    assert bad["status"] == 500 and bad["error"] == "Error_Io" and "syntax error" in bad["detail"]
    denied = await sql(http, serving, "reports", "SELECT 1")
    assert denied["error"] == "Error_AccessDenied"
    on_disk = sqlite3.connect(app.root / ".spin" / "sqlite_db.db").execute("SELECT s FROM t").fetchall()
    assert on_disk == [("héllo",)]


async def test_self_routes_back_into_the_app(
    serving: SpinServing, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    app = copy_app(APP, tmp_path)
    await deploy(serving, app)
    async with http.get(serving.url("/self/plain")) as r:
        assert (r.status, await r.text()) == (200, "200 plain")


async def test_self_needs_http_self_in_allowed_outbound_hosts(
    serving: SpinServing, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manifest = (Path(__file__).parents[1] / "apps" / APP / "spin.toml").read_text()
    app = copy_app(APP, tmp_path, manifest.replace('"http://self", ', ""))
    await deploy(serving, app)
    async with http.get(serving.url("/self/plain")) as r:
        assert r.status == 500  # the guest's outgoing-handler.handle got HTTP-request-denied
    assert 'add "http://self" to allowed_outbound_hosts' in serving.recorder.text()


async def test_a_python_traceback_is_not_reported_as_denied_file_access(
    serving: SpinServing, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    app = copy_app(APP, tmp_path)
    await deploy(serving, app)
    async with http.post(serving.url("/sql/default"), data=b"not json") as r:
        assert r.status == 500  # json.loads raised in the guest: a traceback, then a trap
    logs = serving.recorder.text()
    assert "JSONDecodeError" in logs
    assert "/0/app.py" in logs  # the traceback names componentize-py's bundled module path
    assert "denied file access" not in logs


async def test_the_kv_counter_sample_counts_across_a_restart(
    runtime: WasmRuntime, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    name = "kv-counter-py"
    shutil.copytree(SAMPLES / name, tmp_path / name, ignore=shutil.ignore_patterns("target", ".spin"))
    app = load_app(tmp_path / name / "spin.toml")
    env = {"SPIN_VARIABLE_ADMIN_TOKEN": SECRET, "SPIN_VARIABLE_GREETING": "Hi"}
    for expected in ("Hi, visitor number 1\n", "Hi, visitor number 2\n"):
        s = SpinServing(runtime)  # a new server each time: a restart of wasmdev up
        await s.listen(name)
        try:
            await s.deploy(app, {name: sample_wasm(name)}, env=env)
            async with http.get(s.url(f"/{name}/")) as r:
                assert (r.status, await r.text()) == (200, expected)
        finally:
            s.stop()
    s = SpinServing(runtime)
    await s.listen(name)
    try:
        await s.deploy(app, {name: sample_wasm(name)}, env=env)
        async with http.delete(s.url(f"/{name}/"), headers={"x-admin-token": "wrong"}) as r:
            assert r.status == 403
        async with http.delete(s.url(f"/{name}/"), headers={"x-admin-token": SECRET}) as r:
            assert r.status == 200
        async with http.get(s.url(f"/{name}/")) as r:
            assert await r.text() == "Hi, visitor number 1\n"
        assert SECRET not in s.recorder.text()
    finally:
        s.stop()
