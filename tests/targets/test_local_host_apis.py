"""Spin's host APIs through the local target's own deploy: the variables, key-value store and
runtime config reach a component whichever backend serves it (wasmdev's own process or the
serving processes, which get the same settings in their Deploy message)."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import MappingProxyType

import aiohttp
import pytest

from devenv.config import LocalSettings, Settings
from devenv.errors import DeployError
from devenv.manifest import load_app
from devenv.model import BuiltApp
from devenv.store.store import Store
from devenv.targets.local.target import LocalTarget
from tests.targets.component_builds import CACHE_ROOT, SAMPLES, sample_wasm

pytestmark = pytest.mark.slow

NAME = "kv-counter-py"


def copy_sample(tmp_path: Path, dotenv: str | None) -> Path:
    folder = tmp_path / NAME
    shutil.copytree(SAMPLES / NAME, folder, ignore=shutil.ignore_patterns("target", ".spin", ".env"))
    if dotenv is not None:
        (folder / ".env").write_text(dotenv)
    return folder


def built(folder: Path) -> BuiltApp:
    wasm = sample_wasm(NAME)
    return BuiltApp(
        spec=load_app(folder / "spin.toml"),
        digest=f"sha256:{wasm.stem}",
        wasm=MappingProxyType({NAME: wasm}),
        built_at=time.time(),
    )


def settings(tmp_path: Path, guest_processes: int) -> Settings:
    local = LocalSettings(
        host="127.0.0.1", base_port=0, request_timeout_s=60, cache_dir=CACHE_ROOT, guest_processes=guest_processes
    )
    return Settings(root=tmp_path, local=local)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(force_close=True)  # each request may land on another process
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as s:
        yield s


@pytest.mark.parametrize("guest_processes", [0, 2], ids=["in-process", "serving-processes"])
async def test_variables_and_key_value_reach_a_component_through_the_targets_deploy(
    tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, guest_processes: int
) -> None:
    monkeypatch.setenv("SPIN_VARIABLE_GREETING", "Hi")  # the environment of `wasmdev up`
    folder = copy_sample(tmp_path, dotenv="SPIN_VARIABLE_ADMIN_TOKEN=from-dotenv\n")
    target = LocalTarget(Store(), settings(tmp_path, guest_processes), app_ports={NAME: 0})
    try:
        result = await target.deploy(built(folder))
        url = result.urls[0].replace("/...", "/")
        for expected in ("Hi, visitor number 1\n", "Hi, visitor number 2\n"):
            async with http.get(url) as r:
                assert (r.status, await r.text()) == (200, expected)
        async with http.delete(url, headers={"x-admin-token": "from-dotenv"}) as r:
            assert r.status == 200  # the secret came from the app's .env
        assert (folder / ".spin" / "sqlite_key_value.db").is_file()  # Spin's default store
    finally:
        await target.close()


async def test_a_missing_required_variable_fails_the_deploy_and_the_old_build_serves(
    tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPIN_VARIABLE_ADMIN_TOKEN", raising=False)
    folder = copy_sample(tmp_path, dotenv="SPIN_VARIABLE_ADMIN_TOKEN=t\n")
    target = LocalTarget(Store(), settings(tmp_path, 0), app_ports={NAME: 0})
    try:
        result = await target.deploy(built(folder))
        (folder / ".env").unlink()
        with pytest.raises(DeployError) as err:
            await target.deploy(built(folder))
        assert "admin_token" in str(err.value) and "SPIN_VARIABLE_ADMIN_TOKEN" in str(err.value)
        async with http.get(result.urls[0].replace("/...", "/")) as r:
            assert r.status == 200  # the first build still serves
    finally:
        await target.close()


async def test_a_broken_runtime_config_fails_the_deploy_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = copy_sample(tmp_path, dotenv="SPIN_VARIABLE_ADMIN_TOKEN=t\n")
    config = tmp_path / "runtime-config.toml"
    config.write_text("[key_value_store.default\n")
    base = settings(tmp_path, 0)
    s = Settings(root=tmp_path, local=LocalSettings(**{**vars(base.local), "runtime_config": config}))
    target = LocalTarget(Store(), s, app_ports={NAME: 0})
    try:
        with pytest.raises(Exception) as err:
            await target.deploy(built(folder))
        assert "runtime-config.toml" in str(err.value)
    finally:
        await target.close()
