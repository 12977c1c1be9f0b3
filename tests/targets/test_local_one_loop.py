"""The local target accepts connections on the loop that started it (the engine's), not on a
thread and loop of its own: one loop touches every socket, so nothing crosses between loops.

Shown from outside: while that loop is blocked, a request to an in-process app is not answered,
and once the loop runs again it is. (With a server loop of its own the request would be answered
during the block.)
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from pathlib import Path

from devenv.store.store import Store
from devenv.targets.local.target import LocalTarget
from tests.targets.local_helpers import local_settings, make_app

BLOCK_S = 1.0


async def test_the_apps_ports_are_served_by_the_loop_that_started_the_target(tmp_path: Path) -> None:
    target = LocalTarget(Store(), local_settings(tmp_path, guest_processes=0), app_ports={"demo": 0})
    try:
        result = await target.deploy(make_app(tmp_path / "app"))
        url = result.urls[0]
        statuses: list[int] = []
        answered = threading.Event()

        def get() -> None:
            with urllib.request.urlopen(url, timeout=30) as response:
                statuses.append(response.status)
            answered.set()

        client = threading.Thread(target=get, daemon=True)
        client.start()
        time.sleep(BLOCK_S)  # blocks this loop, and with it every port the target serves
        assert not answered.is_set(), "answered while the loop that started the target was blocked"
        await asyncio.to_thread(answered.wait, 30)
        assert statuses == [200]
    finally:
        await target.close()
