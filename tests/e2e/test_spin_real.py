"""Opt-in: the local Spin runtime against a real installed Spin (`pytest -m spin`).

Needs `spin` ≥ 4.1 on PATH (https://spinframework.dev/install): the spin-sdk 5 component these
tests build exports wasi:http/handler@0.3.0, which Spin 4.0 does not serve. Deselected by
default (pyproject's addopts), like the real-k3d suite; without Spin the tests skip and say so.
"""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest

from devenv.model import LogLine, RequestRecord
from devenv.targets.local.spin_cli import RuntimeChoice, SpinCli, choose_runtime, find_spin
from devenv.targets.local.spin_runtime import SpinServer
from tests.fakes.spin.harness import built_app

pytestmark = pytest.mark.spin


@pytest.fixture
def real_spin() -> SpinCli:
    spin = find_spin()
    if spin is None or "tests/fakes/spin" in spin.path:
        pytest.skip("no real `spin` on PATH: install Spin ≥ 4.1 (https://spinframework.dev/install)")
    if spin.spin_version < (4, 1):
        pytest.skip(f"the spin on PATH is {spin.version}; these tests need Spin ≥ 4.1")
    return spin


def app_with(root: Path, wasm: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "spin.toml").write_text(
        'spin_manifest_version = 2\n\n[application]\nname = "real"\n\n'
        '[[trigger.http]]\nroute = "/..."\ncomponent = "real"\n\n'
        f'[component.real]\nsource = "{wasm}"\n'
    )
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def serve_and_get(
    spin: SpinCli, root: Path, path: str
) -> tuple[int, str, list[LogLine], list[RequestRecord]]:
    logs: list[LogLine] = []
    requests: list[RequestRecord] = []
    built = built_app(root)
    server = SpinServer(
        spin, "real", free_port(), on_log=logs.append, on_request=requests.append, start_timeout_s=300
    )
    await server.start()
    try:
        await server.deploy(built)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{server.port}{path}") as resp,
        ):
            return resp.status, await resp.text(), logs, requests
    finally:
        await server.close()


async def test_a_spin_sdk_5_component_serves_under_real_spin(real_spin: SpinCli, tmp_path: Path) -> None:
    from tests.targets.spin4_build import spin4_wasm

    root = app_with(tmp_path / "app", spin4_wasm())
    assert choose_runtime(built_app(root), "auto", real_spin) is RuntimeChoice.SPIN
    status, body, logs, requests = await serve_and_get(real_spin, root, "/anything")
    assert (status, body) == (200, "hello from spin 4")
    assert requests and requests[-1].status == 200 and requests[-1].component == "real"
    assert any(line.text.startswith("Serving http://127.0.0.1:") for line in logs)


async def test_a_spin_3_component_serves_under_spin_4(real_spin: SpinCli, tmp_path: Path) -> None:
    from tests.targets.component_builds import sample_wasm

    root = app_with(tmp_path / "app", sample_wasm("hello-py"))
    status, _body, _logs, _requests = await serve_and_get(real_spin, root, "/")
    assert status == 200
