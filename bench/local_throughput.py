"""Request throughput of the local target on a WAGI hello, against a plain Python HTTP server.

Both servers answer GET /hello with the same bytes: the local target runs the hello-wat sample
(a fresh wasmtime instance per request, CGI over memfds), the baseline is a bare aiohttp server
returning the guest's response body from memory. The same load generator drives both in the
same run: `wrk` when installed (`apt-get install wrk`), else a Python asyncio client.

It prints req/s, p50 and p99 latency for each and the ratio local/baseline. The issue's goal is
at least 2,000 req/s for the local target on a 2-core machine. Figures, never pass/fail.

    python bench/local_throughput.py [--seconds 5] [--connections 16] [--client wrk|python]

Where a request's time goes (py-spy and per-thread CPU from /proc, 2-core VM shared with other
work, so +-20%): the HTTP loop thread ~150-230 us, of which aiohttp and asyncio themselves are
~135 (measured with a guest that returns at once: the target then serves ~3,000-5,000 req/s);
a guest thread ~220 us per request when alone and ~400-480 us with four sharing the GIL: wasmtime
work through the C API (WASI config: env ~26 us, stdio files ~19, argv and preopen ~9; store
create/free ~30-50; instantiate + run ~100-130), then CGI parsing, the stderr lines and the
request record (~20 us since LogBuffer.append stopped using dataclasses.replace). Everything
but instantiate/run/free holds the one GIL, so the sum of the Python parts of both threads
(~350-450 us) caps the target near 2,000 req/s however many guest threads run; past that, the
next step is more processes (SO_REUSEPORT), not more threads. Tried outside the tree: two
processes of two guest threads each on one SO_REUSEPORT port served 2,440-2,770 req/s where one
process of four served 1,450-1,620 (same minutes, same wrk); each had its own store, so a real
design must also forward the request records and log lines to the engine's process in batches.

The "per-thread CPU" line splits this process's CPU per request between the HTTP loop and the
guest threads.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import wasmtime  # noqa: E402
from aiohttp import web  # noqa: E402

from devenv.config import LocalSettings, Settings  # noqa: E402
from devenv.manifest import load_app  # noqa: E402
from devenv.model import BuiltApp  # noqa: E402
from devenv.store.store import Store  # noqa: E402
from devenv.targets.local.target import LocalTarget  # noqa: E402

SAMPLE = REPO / "sample-apps" / "hello-wat"


@dataclass
class Result:
    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float = 0.0  # this process's CPU (server side only) per request served
    threads_us: dict[str, float] | None = None  # CPU per request by thread group (local target only)


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per thread group ("wasmdev-guest-3" counts as "wasmdev-guest"), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    groups: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except (OSError, TypeError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        group = thread.name.rstrip("0123456789").rstrip("-")
        groups[group] = groups.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return groups


def measured(drive, name: str, url: str, seconds: float, connections: int) -> Result:  # noqa: ANN001
    """Run the load generator and charge the server process's CPU to the requests it served.

    On a shared machine req/s moves with the neighbours' load; CPU per request much less so."""
    before, threads_before = _process_cpu(), _thread_cpu()
    result = drive(name, url, seconds, connections)
    spent, threads_after = _process_cpu() - before, _thread_cpu()
    served = max(1.0, result.requests_per_s * seconds)
    result.cpu_us_per_request = spent / served * 1e6
    result.threads_us = {
        group: (cpu - threads_before.get(group, 0.0)) / served * 1e6
        for group, cpu in threads_after.items()
        if group.startswith("wasmdev-") and cpu > threads_before.get(group, 0.0)
    }
    return result


# --- load generators ------------------------------------------------------------------------------


def _wrk_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(name: str, url: str, seconds: float, connections: int) -> Result:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _wrk_ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _wrk_ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    return Result(name, rps, p50, p99, int(bad.group(1)) if bad else 0 + (1 if errors else 0))


async def _python_load(url: str, seconds: float, connections: int) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    conn = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.get(url) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                latencies.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(worker() for _ in range(connections)))
    return len(latencies), latencies, errors


def run_python_client(name: str, url: str, seconds: float, connections: int) -> Result:
    # In its own process, so the client does not share the servers' GIL.
    code = (
        "import asyncio, json, sys; sys.path.insert(0, sys.argv[1]);"
        "from bench.local_throughput import _python_load;"
        "n, lat, err = asyncio.run(_python_load(sys.argv[2], float(sys.argv[3]), int(sys.argv[4])));"
        "lat.sort(); print(json.dumps([n, lat[len(lat)//2], lat[int(len(lat)*0.99)], err]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO), url, str(seconds), str(connections)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    import json

    n, p50, p99, errors = json.loads(out)
    return Result(name, n / seconds, p50, p99, errors)


# --- the two servers ----------------------------------------------------------------------------------


class BaselineServer:
    """aiohttp on its own thread and loop (as the local target's server is), static bytes."""

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result()

    async def _listen(self) -> None:
        async def hello(_: web.BaseRequest) -> web.Response:
            return web.Response(body=self.body, content_type=self.content_type)

        self._server = web.Server(hello, access_log=None)
        self._listener = await asyncio.get_running_loop().create_server(self._server, "127.0.0.1", 0)
        self.port = self._listener.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        self._listener.close()
        await self._server.shutdown(timeout=1.0)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def build_sample(workdir: Path) -> Path:
    shutil.copytree(SAMPLE, workdir, dirs_exist_ok=True)
    (workdir / "hello.wasm").write_bytes(wasmtime.wat2wasm((workdir / "hello.wat").read_text()))
    return workdir / "spin.toml"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="the local target's guest threads")
    parser.add_argument(
        "--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python"
    )
    args = parser.parse_args()
    drive = run_wrk if args.client == "wrk" else run_python_client

    with tempfile.TemporaryDirectory(prefix="wasmdev-bench-") as tmp:
        manifest = build_sample(Path(tmp) / "hello-wat")
        spec = load_app(manifest)
        built = BuiltApp(
            spec=spec, digest="sha256:bench", wasm={"hello": spec.root / "hello.wasm"}, built_at=time.time()
        )
        settings = Settings(root=Path(tmp), local=LocalSettings(base_port=0, cache_dir=Path(tmp) / "cache"))
        target = LocalTarget(Store(), settings, app_ports={spec.name: 0}, workers=args.workers)
        await target.start()
        try:
            await target.deploy(built)
            url = f"http://127.0.0.1:{target.bound_port(spec.name)}/hello"
            async with aiohttp.ClientSession() as session, session.get(url) as r:
                body, content_type = await r.read(), r.content_type
            assert r.status == 200, (r.status, body)

            baseline = BaselineServer(body, content_type)
            baseline.start()
            base_url = f"http://127.0.0.1:{baseline.port}/hello"
            # Warm both up (thread pools, memfds, caches) before measuring.
            await asyncio.to_thread(drive, "warm-up", url, 1, args.connections)
            await asyncio.to_thread(drive, "warm-up", base_url, 1, args.connections)
            local = await asyncio.to_thread(
                measured, drive, "local target (WAGI hello)", url, args.seconds, args.connections
            )
            plain = await asyncio.to_thread(
                measured, drive, "plain aiohttp, same bytes", base_url, args.seconds, args.connections
            )
            baseline.stop()
            usage = target.usage(spec.name)
        finally:
            await target.close()

    print(
        f"load: {args.client}, {args.connections} connections, {args.seconds:g}s each; {os.cpu_count()} CPUs"
    )
    print(f"{'server':<28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU us/req':>11}")
    for r in (local, plain):
        print(
            f"{r.name:<28} {r.requests_per_s:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>7}"
            f" {r.cpu_us_per_request:>11.0f}"
        )
    print(
        f"ratio local/baseline: {local.requests_per_s / plain.requests_per_s:.2f} (req/s),"
        f" {local.cpu_us_per_request / plain.cpu_us_per_request:.2f} (CPU per request)"
    )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (req/s figures assume the CPUs are free)")
    print(f"goal >= 2000 req/s: {'met' if local.requests_per_s >= 2000 else 'not met'}")
    if local.threads_us:
        split = ", ".join(f"{group} {us:.0f} us" for group, us in sorted(local.threads_us.items()))
        print(f"per-thread CPU per request (local target): {split}")
    per_req_cpu_us = usage.cpu_seconds_total / max(1, usage.requests_total) * 1e6
    print(
        f"guest CPU per request (instantiate + run): {per_req_cpu_us:.0f} us over {usage.requests_total} requests"
    )


if __name__ == "__main__":
    asyncio.run(main())
