"""Deploy-to-serving through the local Spin runtime (SpinServer + the fake `spin`) against the
embedded runtime (LocalTarget, the WAGI hello), in the same run.

Each run hands the runtime a new build and times from the deploy call to the first response
through the app's port that carries the new build's content. For the Spin runtime that is: a new
`spin up` process started on a private port, answering, the proxy switched, the old process
stopped; for the embedded one: compile (cached by content, so a new build compiles once),
validate and swap in-process.

The fake `spin` is a Python script that serves canned responses: its start-up (~an interpreter
start) stands in for real Spin's, which also loads and (on a cold cache) compiles the component,
so real figures are larger; `pytest -m spin` runs the real thing. Figures, never pass/fail.

    python bench/spin_runtime_deploy.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType

import aiohttp
import wasmtime

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devenv.config import LocalSettings, Settings  # noqa: E402
from devenv.manifest import load_app  # noqa: E402
from devenv.model import BuiltApp  # noqa: E402
from devenv.store.store import Store  # noqa: E402
from devenv.targets.local.spin_cli import find_spin  # noqa: E402
from devenv.targets.local.spin_runtime import SpinServer, free_loopback_port  # noqa: E402
from devenv.targets.local.target import LocalTarget  # noqa: E402
from tests.fakes.spin.harness import FAKE_SPIN_DIR, P3, wasm_digest, write_spin_app  # noqa: E402

SAMPLES = REPO / "sample-apps"
POLL_S = 0.005


async def first_response_with(port: int, marker: str, path: str = "/", timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                    if marker in await resp.text():
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(POLL_S)
    raise TimeoutError(f"no response with {marker!r}")


def wat_build(root: Path, i: int) -> BuiltApp:
    """hello-wat with its greeting's version character changed (same length: baked into the module)."""
    tag = "0123456789abcdefghijklmnopqrstuvwxyz"[i % 36]
    text = (SAMPLES / "hello-wat" / "hello.wat").read_text().replace("hello-wat v1!", f"hello-wat v{tag}!")
    wasm = root / f"hello-wat-{i}.wasm"
    wasm.write_bytes(bytes(wasmtime.wat2wasm(text)))
    spec = load_app(SAMPLES / "hello-wat" / "spin.toml")
    return BuiltApp(
        spec=spec,
        digest=f"sha256:{i:064x}",
        wasm=MappingProxyType({next(iter(spec.components)): wasm}),
        built_at=time.time(),
    )


async def embedded(runs: int, tmp: Path) -> list[float]:
    local = LocalSettings(host="127.0.0.1", base_port=0, cache_dir=tmp / "cache", guest_processes=0)
    target = LocalTarget(Store(), Settings(root=tmp, local=local), app_ports={"hello-wat": 0})
    await target.start()
    times = []
    try:
        for i in range(runs + 1):  # the first deploy starts the server: not counted
            built = wat_build(tmp, i + 1)
            tag = "0123456789abcdefghijklmnopqrstuvwxyz"[(i + 1) % 36]
            started = time.perf_counter()
            await target.deploy(built)
            port = target.bound_port("hello-wat")
            assert port is not None
            await first_response_with(port, f"hello-wat v{tag}!", "/hello")
            if i:
                times.append((time.perf_counter() - started) * 1000)
    finally:
        await target.close()
    return times


async def through_spin(runs: int, tmp: Path) -> list[float]:
    os.environ["PATH"] = f"{FAKE_SPIN_DIR}{os.pathsep}{os.environ['PATH']}"
    spin = find_spin()
    assert spin is not None
    server = SpinServer(
        spin, "hello", free_loopback_port(), on_log=lambda _l: None, on_request=lambda _r: None
    )
    await server.start()
    times = []
    try:
        for i in range(runs + 1):
            built = write_spin_app(tmp / "spin-app", P3, marker=f"build-{i}")
            digest = wasm_digest(tmp / "spin-app" / "app.wasm")
            started = time.perf_counter()
            await server.deploy(built)
            await first_response_with(server.port, digest)
            if i:
                times.append((time.perf_counter() - started) * 1000)
    finally:
        await server.close()
    return times


def summary(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"{name:<34} median {statistics.median(times):7.1f} ms   p90 {p90:7.1f} ms   (n={len(times)})"


async def main_async(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="wasmdev-bench-spin-") as tmp:
        root = Path(tmp)
        emb = await embedded(runs, root)
        spin = await through_spin(runs, root)
    print(summary("embedded (hello-wat, in-process)", emb))
    print(summary("spin runtime (fake spin up + proxy)", spin))
    print(f"ratio spin / embedded (median): {statistics.median(spin) / statistics.median(emb):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    asyncio.run(main_async(parser.parse_args().runs))


if __name__ == "__main__":
    main()
