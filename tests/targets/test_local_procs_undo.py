"""A first build that some serving processes accept and another refuses: the deploy fails, and
the processes that accepted it drop it again (nothing was serving before, so nothing to go back
to); otherwise they keep a version, its staged files and its connections, that nobody serves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devenv.errors import DeployError
from devenv.model import FileMount
from devenv.store.store import Store
from devenv.targets.local.messages import Deploy, Remove
from devenv.targets.local.serving_process import ServingProcess
from devenv.targets.local.target import LocalTarget
from tests.targets.local_helpers import Comp, local_settings, make_app, wait_until


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[LocalTarget]:
    t = LocalTarget(Store(), local_settings(tmp_path, guest_processes=2), app_ports={"demo": 0})
    await t.start()
    yield t
    await t.close()


def staged(process: ServingProcess) -> list[Path]:
    """The version folders the process has staged granted files into (one per live version)."""
    return list(process.files_dir.iterdir()) if process.files_dir.is_dir() else []


async def test_a_refused_first_build_is_dropped_by_the_processes_that_accepted_it(
    target: LocalTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    processes = target._processes
    assert processes is not None
    assert target._server is not None
    await target._server.run(processes.start())  # its methods run on the server loop
    await wait_until(lambda: len(processes._processes) == 2 and all(p.ready.done() for p in processes._processes), 60)
    accepting, refusing = processes._processes
    real_request = refusing.request

    def refuse_deploys(kind: str, app: str, seq: int, message: Deploy | Remove) -> asyncio.Future[str]:
        # This process refuses the build, as one that could not read a granted file would.
        if kind != "deploy":
            return real_request(kind, app, seq, message)
        refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        refused.set_result("refused by the test")
        return refused

    monkeypatch.setattr(refusing, "request", refuse_deploys)
    root = tmp_path / "app"
    (root / "greeting.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "greeting.txt").write_text("hi\n")
    with pytest.raises(DeployError, match="refused by the test"):
        await target.deploy(make_app(root, [Comp(files=(FileMount(source="greeting.txt"),))]))
    # The accepting process retired the version again: its staged files are gone.
    await wait_until(lambda: staged(accepting) == [])
    assert not processes.serves("demo")
