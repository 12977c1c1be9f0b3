"""Keeping a build's compiled entries and pruning the cache (a scandir and a stat of every entry)
happen in the deploy's build thread, never on the engine's event loop, which must stay free for
the dashboard while a save deploys."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from devenv.store.store import Store
from devenv.targets.local.compile_cache import CompileCache
from devenv.targets.local.target import LocalTarget
from tests.targets.local_helpers import Comp, hello_wasm, local_settings, make_app


@pytest.mark.parametrize("guest_processes", [0, 2], ids=["in-process", "serving-processes"])
async def test_a_deploy_prunes_the_cache_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guest_processes: int
) -> None:
    loop_thread = threading.current_thread()
    pruned_on: list[threading.Thread] = []
    real_prune = CompileCache.prune

    def prune(self: CompileCache) -> None:
        pruned_on.append(threading.current_thread())
        real_prune(self)

    monkeypatch.setattr(CompileCache, "prune", prune)
    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=guest_processes), app_ports={"demo": 0})
    try:
        for version in ("v1", "v2"):
            app = make_app(tmp_path / "app", [Comp(wasm=hello_wasm(version))], digest=f"sha256:{version}")
            await target.deploy(app)
        assert len(pruned_on) == 2  # once per deploy
        assert loop_thread not in pruned_on
        assert target.cache is not None
        assert len(target.cache._kept["demo"]) == 2  # both builds kept for rollback
    finally:
        await target.close()
