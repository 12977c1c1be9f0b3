"""The C sample really builds with zig from PyPI and really serves on the local target.

The first zig build on a machine compiles wasi-libc (~45 s); the build is shared by the tests
here through a session fixture."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devenv.model import AppStatus, LogStream
from tests.conftest import SAMPLE_APPS
from tests.engine.session import dev_session

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def hello_c_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("ziglang", reason="the C sample builds with zig from PyPI: pip install ziglang")
    root = tmp_path_factory.mktemp("hello-c-ws")
    shutil.copytree(
        SAMPLE_APPS / "hello-c", root / "hello-c", ignore=shutil.ignore_patterns("target", ".zig-cache")
    )
    return root


async def test_hello_c_builds_serves_and_logs_guest_stderr(
    hello_c_workspace: Path, compile_cache: Path
) -> None:
    async with dev_session(hello_c_workspace, compile_cache) as s:
        await s.wait(
            lambda st: st.apps["hello-c"].status is AppStatus.SERVING, "hello-c serving", timeout=240
        )
        assert s.url("hello-c").endswith("/hello-c")
        response = await s.get("hello-c", "/there?x=1")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text.startswith("Hello from C (WAGI, wasm32-wasi)")
        # PATH_INFO is the path below the matched route, as Spin's WAGI executor sets it.
        assert "method=GET path=/there query=x=1" in response.text
        await s.wait(
            lambda _st: any(
                line.stream is LogStream.STDERR and "hello-c: GET /there" in line.text
                for line in s.store.logs.tail(50)
            ),
            "the guest's stderr line",
        )
        assert (hello_c_workspace / "hello-c" / "target" / "hello-c.wasm").stat().st_size < 200_000  # -s
