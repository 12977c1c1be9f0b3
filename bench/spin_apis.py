"""Per-request cost of Spin's host APIs on the local target, against a plain handler of the same
component, in the same run.

One component (tests/apps/spin-apis-py, spin-sdk, world fermyon:spin/http-trigger@2.0.0) serves
every route, so the only difference between them is the host call:
- plain:      GET /plain            (no host API; the baseline)
- variables:  GET /var/message      (fermyon:spin/variables get of a templated variable)
- kv get:     GET /kv/default/k     (key-value open + get, 64-byte value, SQLite in .spin/)
- kv set:     PUT /kv/default/k     (key-value open + set of a 64-byte body)

Requests go through the runner (a fresh Store + instance each, as Spin does), in interleaved
rounds so every route sees the same machine state. Figures only, never pass/fail:

    python bench/spin_apis.py [--requests 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devenv.model import LogStream, Route  # noqa: E402
from devenv.targets.local.compile_cache import CompileCache  # noqa: E402
from devenv.targets.local.component_host import build_runner  # noqa: E402
from devenv.targets.local.executor import ComponentRunner, GuestRequest, RequestLimits  # noqa: E402
from devenv.targets.local.runtime import WasmRuntime  # noqa: E402
from devenv.targets.local.spin.deploy import SpinAppSettings  # noqa: E402
from tests.targets.component_builds import COMPILED  # noqa: E402
from tests.targets.spin_apps import app_wasm, copy_app  # noqa: E402

APP = "spin-apis-py"
VALUE = bytes(range(64))
ROUTES = {
    "plain": ("GET", "/plain", b""),
    "variables get": ("GET", "/var/message", b""),
    "kv get": ("GET", "/kv/default/k", b""),
    "kv set": ("PUT", "/kv/default/k", VALUE),
}


def request(method: str, path: str, body: bytes, n: int) -> GuestRequest:
    return GuestRequest(
        method=method,
        path=path,
        query="",
        headers=(("content-length", str(len(body))),),
        body=body,
        route=Route("/..."),
        request_id=f"bench-{n}",
    )


def ignore(stream: LogStream, text: str) -> None:
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per route")
    args = parser.parse_args()
    runtime = WasmRuntime()
    with tempfile.TemporaryDirectory() as tmp:
        app = copy_app(APP, Path(tmp))
        component = app.components[APP]
        runner: ComponentRunner = build_runner(
            component=component,
            wasm_path=app_wasm(APP),
            runtime=runtime,
            cache=CompileCache(COMPILED, runtime.config_key),
            limits=RequestLimits(timeout_s=30),
            spin_app=SpinAppSettings(app=app, env={"SPIN_VARIABLE_API_TOKEN": "t"}),
        )
        response, _ = runner.handle(request("PUT", "/kv/default/k", VALUE, 0), ignore)
        assert response.status == 204, response
        for name, (method, path, body) in ROUTES.items():  # warm up, and check each route works
            response, _ = runner.handle(request(method, path, body, 0), ignore)
            assert response.status in (200, 204), (name, response)
        times: dict[str, list[float]] = {name: [] for name in ROUTES}
        for n in range(args.requests):
            for name, (method, path, body) in ROUTES.items():
                started = time.perf_counter()
                runner.handle(request(method, path, body, n), ignore)
                times[name].append((time.perf_counter() - started) * 1000)
    runtime.close()
    base = statistics.median(times["plain"])
    print(f"{APP}: {args.requests} requests per route through the runner, interleaved")
    print(f"  {'route':16} {'p50':>9} {'p95':>9} {'over plain (p50)':>18} {'ratio':>6}")
    for name, samples in times.items():
        samples.sort()
        p50 = statistics.median(samples)
        p95 = samples[int(len(samples) * 0.95) - 1]
        print(f"  {name:16} {p50:7.2f}ms {p95:7.2f}ms {p50 - base:+16.2f}ms {p50 / base:6.2f}")


if __name__ == "__main__":
    main()
