"""Edit-to-serving with and without a churning file in the workspace, in the same run.

A file that belongs to no app but is written all the time (a log every 20 ms, a database beside
the app) must not hold anyone's build: the dev loop drops events that concern no app before the
watcher's quiet timer. This script runs the real dev loop (real watchfiles, real builds of the
hello-wat sample, the real local target, real HTTP) on a temp copy of the sample, and for each
edit measures the time from the write to the first response carrying the new content, in three
conditions, interleaved run by run so machine load affects them alike:

- quiet: nothing else writes;
- churn: a thread writes app.log, data/app.db and a log outside the app every 20 ms;
- churn, unfiltered: the same churn with the dev loop's relevance filter turned off (every event
  reaches the quiet timer, as before the fix), to show what the filter saves.

Prints medians and p90 and the ratios churn / quiet and unfiltered / quiet. Figures only.

    python bench/edit_to_serving_churn.py [--runs N]

Builds run with your PATH (as `spin build`): run it with wasmdev's virtualenv activated, since
the sample's `python build.py` needs wasmtime.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from devenv.config import load_workspace  # noqa: E402
from devenv.engine.devloop import DevLoop  # noqa: E402
from devenv.model import AppStatus  # noqa: E402
from devenv.store.store import Store  # noqa: E402
from devenv.targets.local.target import LocalTarget  # noqa: E402

POLL_S = 0.01
CHURN_S = 0.02
TAGS = "0123456789abcdefghijklmnopqrstuvwxyz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Churn:
    """Writes three files every 20 ms on its own thread while running."""

    def __init__(self, app: Path, root: Path) -> None:
        (app / "data").mkdir(exist_ok=True)
        self.paths = [app / "app.log", app / "data" / "app.db", root / "server.log"]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Churn:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            for path in self.paths:
                path.write_text(f"{i}\n")
            i += 1
            time.sleep(CHURN_S)

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def stats(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]


async def measure(runs: int) -> dict[str, list[float]]:
    root = Path(tempfile.mkdtemp(prefix="wasmdev-bench-churn-"))
    app = root / "hello-wat"
    shutil.copytree(REPO / "sample-apps" / "hello-wat", app, ignore=shutil.ignore_patterns("*.wasm"))
    source = app / "hello.wat"
    workspace = load_workspace(root)
    settings = workspace.settings.with_overrides(
        local_base_port=free_port(), local_cache_dir=str(root / "cache"), local_guest_processes=0
    )
    workspace = replace(workspace, settings=settings)
    store = Store()
    loop = DevLoop(store, workspace, LocalTarget(store, settings))
    filtered = loop.relevant_paths  # the bench switches the filter off for one condition

    def unfiltered(paths: list[Path]) -> list[Path]:
        return paths

    task = asyncio.create_task(loop.run())
    results: dict[str, list[float]] = {"quiet": [], "churn": [], "churn, unfiltered": []}
    try:
        await asyncio.wait_for(loop.ready.wait(), 120)
        while (
            store.state.apps.get("hello-wat") is None
            or store.state.apps["hello-wat"].status is not AppStatus.SERVING
        ):
            await asyncio.sleep(0.05)
        url = store.state.apps["hello-wat"].urls[0] + "/bench"
        original = source.read_text()
        async with httpx.AsyncClient(timeout=10) as client:
            n = 0
            for _ in range(runs):
                for condition in results:
                    assert loop.watcher is not None
                    loop.watcher.relevant = unfiltered if condition == "churn, unfiltered" else filtered
                    with Churn(app, root) if condition != "quiet" else _nothing():
                        await asyncio.sleep(0.3)  # the churn is under way before the edit
                        tag = "v" + TAGS[n % len(TAGS)]
                        n += 1
                        marker = f"hello-wat {tag}!"
                        started = time.perf_counter()
                        source.write_text(re.sub(r"hello-wat v\w!", marker, original, count=1))
                        while marker not in (await client.get(url)).text:
                            await asyncio.sleep(POLL_S)
                        results[condition].append((time.perf_counter() - started) * 1000)
                    await asyncio.sleep(0.5)  # let the last events drain before the next condition
    finally:
        loop.stop()
        await asyncio.wait_for(task, 60)
        shutil.rmtree(root, ignore_errors=True)
    return results


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    results = asyncio.run(measure(args.runs))
    quiet = stats(results["quiet"])[0]
    print(f"edit-to-serving, hello-wat, {args.runs} edits per condition (median / p90, ms):")
    for condition, values in results.items():
        median, p90 = stats(values)
        print(f"  {condition:<18} {median:7.0f} / {p90:7.0f}   ratio to quiet {median / quiet:5.2f}")


if __name__ == "__main__":
    main()
