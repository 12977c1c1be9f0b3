"""Latency of the Python wasi:http sample (hello-py) on the local target, next to the WAGI hello.

Measured in one run, on the same machine state:
- startup: from compiled code cached on disk to the first response (a new engine and compile
  cache, so nothing is in memory: load + link + check + first request). Goal: <= 50 ms.
- per request through the runner (a fresh Store + instance each, as Spin does): p50 / p95 and
  sequential req/s. Goal: <= 10 ms per request.
- the same over real HTTP through the local target's server (a Python client, N connections).
- the WAGI hello (sample-apps/hello-wat, built with wasmtime.wat2wasm) through the same paths.
- a soak: RSS before and after N requests (default 10,000) through one runner.

Figures only, never pass/fail:

    python bench/component_latency.py [--requests 500] [--http-requests 1000] [--soak 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import wasmtime  # noqa: E402

from devenv.config import LocalSettings, Settings  # noqa: E402
from devenv.manifest import load_app  # noqa: E402
from devenv.model import BuiltApp, LogStream, Route  # noqa: E402
from devenv.store.store import Store  # noqa: E402
from devenv.targets.local.compile_cache import CompileCache  # noqa: E402
from devenv.targets.local.executor import ComponentRunner, GuestRequest, RequestLimits  # noqa: E402
from devenv.targets.local.runtime import WasmRuntime  # noqa: E402
from devenv.targets.local.target import LocalTarget  # noqa: E402
from devenv.targets.local.version_builder import build_version  # noqa: E402
from tests.targets.component_builds import CACHE_ROOT, SAMPLES, sample_wasm  # noqa: E402

LIMITS = RequestLimits(timeout_s=30.0)


def built_app(name: str, wasm: Path) -> BuiltApp:
    """The sample's manifest with ``wasm`` as its (only) component's build output."""
    spec = load_app(SAMPLES / name / "spin.toml")
    component = next(iter(spec.components))
    return BuiltApp(
        spec=spec,
        digest=f"sha256:{wasm.stem}",
        wasm=MappingProxyType({component: wasm}),
        built_at=time.time(),
    )


def hello_wat_wasm(workdir: Path) -> Path:
    path = workdir / "hello-wat.wasm"
    path.write_bytes(bytes(wasmtime.wat2wasm((SAMPLES / "hello-wat" / "hello.wat").read_text())))
    return path


def runner_of(
    app: BuiltApp, runtime: WasmRuntime, cache: CompileCache, staging: Path
) -> tuple[ComponentRunner, Route]:
    plan = build_version(app, runtime, cache, LIMITS, staging)
    route, runner = plan.version.table.routes[0]
    return runner, route


def request_for(route: Route, path: str) -> GuestRequest:
    return GuestRequest(
        method="GET",
        path=path,
        query="",
        headers=(("host", "127.0.0.1"),),
        body=b"",
        route=route,
        request_id="bench",
    )


def quiet(stream: LogStream, text: str) -> None:
    pass


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


STARTUP_PROBE = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
started = time.perf_counter()
from bench.component_latency import CACHE_ROOT, CompileCache, WasmRuntime, built_app, quiet, request_for, runner_of
import devenv.targets.local.component_host  # noqa: F401 - module imports are process start, not load
imported = time.perf_counter()
runtime = WasmRuntime()
cache = CompileCache(CACHE_ROOT / "compiled", runtime.config_key)
t0 = time.perf_counter()
runner, route = runner_of(built_app({name!r}, Path({wasm!r})), runtime, cache, Path({staging!r}))
t1 = time.perf_counter()
response, _ = runner.handle(request_for(route, {path!r}), quiet)
t2 = time.perf_counter()
assert response.status == 200 and cache.compiled == 0, (response.status, cache.compiled)
print((t1 - t0) * 1000, (t2 - t1) * 1000, (imported - started) * 1000)
"""


def startup_ms(name: str, wasm: Path, path: str, staging: Path) -> tuple[float, float, float]:
    """A restart: a new process whose compile cache has the component on disk only. Returns
    (load + link + check, first request, importing wasmdev and wasmtime) in ms."""
    code = STARTUP_PROBE.format(repo=str(REPO), name=name, wasm=str(wasm), staging=str(staging), path=path)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    load, first, imports = (float(x) for x in done.stdout.split())
    return load, first, imports


def runner_latency(runner: ComponentRunner, route: Route, path: str, n: int) -> tuple[float, float, float]:
    req = request_for(route, path)
    for _ in range(min(20, n)):
        runner.handle(req, quiet)
    times = []
    started = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        runner.handle(req, quiet)
        times.append((time.perf_counter() - t) * 1000)
    total = time.perf_counter() - started
    return percentile(times, 50), percentile(times, 95), n / total


async def http_latency(url: str, n: int, connections: int) -> tuple[float, float, float, int]:
    times: list[float] = []
    errors = 0
    remaining = n

    async with aiohttp.ClientSession() as session:
        for _ in range(10):
            async with session.get(url) as r:
                await r.read()

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                t = time.perf_counter()
                async with session.get(url) as r:
                    await r.read()
                    errors += r.status != 200
                times.append((time.perf_counter() - t) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        total = time.perf_counter() - started
    return percentile(times, 50), percentile(times, 95), len(times) / total, errors


async def over_http(
    apps: dict[str, tuple[BuiltApp, str]], n: int, connections: int, tmp: Path
) -> dict[str, tuple]:
    local = LocalSettings(host="127.0.0.1", base_port=0, request_timeout_s=30, cache_dir=CACHE_ROOT)
    target = LocalTarget(Store(), Settings(root=tmp, local=local), app_ports={name: 0 for name in apps})
    await target.start()
    try:
        results = {}
        for name, (app, path) in apps.items():
            await target.deploy(app)
            url = f"http://127.0.0.1:{target.bound_port(app.spec.name)}{path}"
            results[name] = await http_latency(url, n, connections)
        return results
    finally:
        await target.close()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def soak(runner: ComponentRunner, route: Route, path: str, n: int, report: Callable[[str], None]) -> None:
    req = request_for(route, path)
    for _ in range(200):
        runner.handle(req, quiet)
    gc.collect()
    before = rss_mb()
    marks = {n // 4, n // 2, 3 * n // 4, n}
    for i in range(1, n + 1):
        runner.handle(req, quiet)
        if i in marks:
            gc.collect()
            report(f"  after {i:>6} requests: RSS {rss_mb():7.1f} MB ({rss_mb() - before:+.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="sequential requests per runner")
    parser.add_argument("--http-requests", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--soak", type=int, default=10_000, help="0 to skip")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        py = built_app("hello-py", sample_wasm("hello-py"))
        wat = built_app("hello-wat", hello_wat_wasm(tmp))
        apps = {"hello-py (wasi:http)": (py, "/hello-py/"), "hello-wat (WAGI)": (wat, "/hello/")}

        # Fill the on-disk cache first, so startup measures a restart, not a first compile.
        runtime = WasmRuntime()
        cache = CompileCache(CACHE_ROOT / "compiled", runtime.config_key)
        runners = {name: runner_of(app, runtime, cache, tmp / name) for name, (app, _) in apps.items()}

        print("startup from cached compiled code to the first response (a new process; median of 3):")
        for name, (app, path) in apps.items():
            wasm = next(iter(app.wasm.values()))
            runs = [startup_ms(app.spec.name, wasm, path, tmp / f"s-{name}-{i}") for i in range(3)]
            load = statistics.median(r[0] for r in runs)
            first = statistics.median(r[1] for r in runs)
            imports = statistics.median(r[2] for r in runs)
            print(
                f"  {name:24} {load + first:7.1f} ms = load+link+check {load:6.1f} ms + first request {first:5.1f} ms"
                f"   (python imports before that: {imports:.0f} ms)"
            )

        print(
            f"\n{'per request, runner':26} {'p50':>9} {'p95':>9} {'req/s':>8}   (fresh Store + instance each)"
        )
        for name, (_app, path) in apps.items():
            runner, route = runners[name]
            p50, p95, rps = runner_latency(runner, route, path, args.requests)
            print(f"  {name:24} {p50:7.2f}ms {p95:7.2f}ms {rps:8.0f}")

        print(f"\nover HTTP, {args.connections} connections, {args.http_requests} requests (Python client)")
        results = asyncio.run(over_http(apps, args.http_requests, args.connections, tmp))
        for name, (p50, p95, rps, errors) in results.items():
            print(f"  {name:24} {p50:7.2f}ms {p95:7.2f}ms {rps:8.0f}   errors={errors}")
        py_rps, wat_rps = results["hello-py (wasi:http)"][2], results["hello-wat (WAGI)"][2]
        print(f"ratio wasi:http / WAGI req/s over HTTP: {py_rps / wat_rps:.2f}")

        if args.soak:
            print(f"\nsoak: {args.soak} requests through one hello-py runner")
            runner, route = runners["hello-py (wasi:http)"]
            soak(runner, route, "/hello-py/", args.soak, print)
        runners.clear()
        runtime.close()
    gc.collect()


if __name__ == "__main__":
    main()
