"""Request throughput of the local target on a WAGI hello, against a plain Python HTTP server.

Both servers answer GET /hello with the same bytes: the local target runs the hello-wat sample
(a fresh wasmtime instance per request, CGI over memfds), the baseline is a bare aiohttp server
returning the guest's response body from memory. The same load generator drives both in the
same run: `wrk` when installed (`apt-get install wrk`), else a Python asyncio client.

It measures wasmdev's default configuration here (WAGI apps served by ``[local].guest_processes``
serving processes, 2 on a multi-core machine) and, in the same run, the in-process server
(``guest_processes = 0``), then the baseline; it prints req/s, p50 and p99 latency and CPU per
request (all processes) for each, and the ratios to the baseline and between the two modes. Then the Python wasi:http
hello (sample-apps/hello-py, served by the same processes) and its ratio to the WAGI hello. The
goal is 0.9 of the baseline. Figures, never pass/fail.

    python bench/local_throughput.py [--seconds 5] [--connections 16] [--guest-processes N]
                                     [--client wrk|python] [--no-component]

Why processes (py-spy and per-thread CPU from /proc, 2-core VM shared with other work, so
+-20%): in one process, the HTTP loop thread spends ~150-230 us a request (aiohttp and asyncio
~135) and a guest thread ~220 us alone, ~400-480 us with four sharing the GIL (WASI config, store
create/free, instantiate + run ~100-130, CGI parsing, the stderr lines, the request record).
Everything but instantiate/run/free holds the one GIL, which caps one process near 2,000 req/s
however many guest threads run. Each serving process has its own GIL and runs the same server on
the app's shared listening socket; it reports records and log lines in batches.
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
    """aiohttp on a thread and loop that serve nothing else, static bytes."""

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


def _children_cpu(pids: list[int]) -> float:
    """CPU seconds of the guest processes (they are not this process's, so getrusage misses them)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def measure_local(args: argparse.Namespace, drive, processes: int) -> tuple[Result, bytes, str, float]:  # noqa: ANN001
    """Serve the sample on a fresh local target with ``processes`` guest processes (0: threads)."""
    with tempfile.TemporaryDirectory(prefix="wasmdev-bench-") as tmp:
        manifest = build_sample(Path(tmp) / "hello-wat")
        spec = load_app(manifest)
        built = BuiltApp(
            spec=spec, digest="sha256:bench", wasm={"hello": spec.root / "hello.wasm"}, built_at=time.time()
        )
        name = f"local WAGI, {processes} guest processes" if processes else "local WAGI, guest threads"
        return await serve_and_measure(args, drive, processes, built, "/hello", Path(tmp) / "cache", name)


async def measure_component(args: argparse.Namespace, drive, processes: int) -> Result | None:  # noqa: ANN001
    """The Python wasi:http hello (sample-apps/hello-py, built by componentize-py, cached)."""
    try:
        from tests.targets.component_builds import COMPILED, sample_wasm

        wasm = sample_wasm("hello-py")
    except BaseException as err:  # noqa: BLE001 - pytest.skip when componentize-py is missing
        print(f"wasi:http hello not measured: {err}")
        return None
    spec = load_app(REPO / "sample-apps" / "hello-py" / "spin.toml")
    built = BuiltApp(spec=spec, digest="sha256:bench-py", wasm={"hello-py": wasm}, built_at=time.time())
    name = f"wasi:http hello, {processes} processes" if processes else "wasi:http hello, threads"
    result, _, _, _ = await serve_and_measure(
        args, drive, processes, built, "/hello-py/world", COMPILED.parent, name
    )
    return result


async def serve_and_measure(  # noqa: ANN001
    args: argparse.Namespace, drive, processes: int, built: BuiltApp, path: str, cache_dir: Path, name: str
) -> tuple[Result, bytes, str, float]:
    spec = built.spec
    with tempfile.TemporaryDirectory(prefix="wasmdev-bench-") as tmp:
        local_settings = LocalSettings(base_port=0, cache_dir=cache_dir, guest_processes=processes)
        settings = Settings(root=Path(tmp), local=local_settings)
        target = LocalTarget(Store(), settings, app_ports={spec.name: 0}, workers=args.workers)
        await target.start()
        try:
            result = await target.deploy(built)
            if result.notes:
                print("deploy notes:", *result.notes, sep="\n  ")
            url = f"http://127.0.0.1:{target.bound_port(spec.name)}{path}"
            async with aiohttp.ClientSession() as session, session.get(url) as r:
                body, content_type = await r.read(), r.content_type
            assert r.status == 200, (r.status, body)
            await asyncio.to_thread(drive, "warm-up", url, 1, args.connections)
            pids = target._processes.pids if target._processes is not None else []
            children_before = _children_cpu(pids)
            each_before = [_children_cpu([pid]) for pid in pids]
            local = await asyncio.to_thread(measured, drive, name, url, args.seconds, args.connections)
            served = max(1.0, local.requests_per_s * args.seconds)
            local.cpu_us_per_request += (_children_cpu(pids) - children_before) / served * 1e6
            each = [_children_cpu([pid]) - before for pid, before in zip(pids, each_before, strict=True)]
            if pids and sum(each) > 0:  # how evenly the processes shared the connections
                split = " / ".join(f"{100 * cpu / sum(each):.0f}%" for cpu in each)
                print(f"{name}: CPU split between the processes {split}")
            usage = target.usage(spec.name)
        finally:
            await target.close()
    per_req_cpu_us = usage.cpu_seconds_total / max(1, usage.requests_total) * 1e6
    return local, body, content_type, per_req_cpu_us


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="the local target's guest threads")
    parser.add_argument(
        "--guest-processes",
        type=int,
        default=LocalSettings().guest_processes,
        help="guest processes of the measured configuration (default: wasmdev's default here)",
    )
    parser.add_argument(
        "--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python"
    )
    parser.add_argument(
        "--no-component", action="store_true", help="skip the Python wasi:http hello (needs componentize-py)"
    )
    args = parser.parse_args()
    drive = run_wrk if args.client == "wrk" else run_python_client

    modes = [args.guest_processes] + ([0] if args.guest_processes else [])
    locals_: list[Result] = []
    for processes in modes:
        local, body, content_type, guest_us = await measure_local(args, drive, processes)
        locals_.append(local)
        print(f"{local.name}: guest CPU per request (instantiate + run) {guest_us:.0f} us")
    component = None if args.no_component else await measure_component(args, drive, args.guest_processes)

    baseline = BaselineServer(body, content_type)
    baseline.start()
    base_url = f"http://127.0.0.1:{baseline.port}/hello"
    await asyncio.to_thread(drive, "warm-up", base_url, 1, args.connections)
    plain = await asyncio.to_thread(
        measured, drive, "plain aiohttp, same bytes", base_url, args.seconds, args.connections
    )
    baseline.stop()

    local = locals_[0]
    print(
        f"load: {args.client}, {args.connections} connections, {args.seconds:g}s each; {os.cpu_count()} CPUs"
    )
    print(f"{'server':<30} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU us/req':>11}")
    for r in (*locals_, *([component] if component else []), plain):
        print(
            f"{r.name:<30} {r.requests_per_s:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>7}"
            f" {r.cpu_us_per_request:>11.0f}"
        )
    print(
        f"ratio local/baseline: {local.requests_per_s / plain.requests_per_s:.2f} (req/s),"
        f" {local.cpu_us_per_request / plain.cpu_us_per_request:.2f} (CPU per request, all processes)"
    )
    if len(locals_) > 1:
        print(f"ratio guest processes/guest threads: {local.requests_per_s / locals_[1].requests_per_s:.2f} (req/s)")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (req/s figures assume the CPUs are free)")
    if component is not None:
        print(f"ratio wasi:http hello/WAGI hello: {component.requests_per_s / local.requests_per_s:.2f} (req/s)")
    ratio = local.requests_per_s / plain.requests_per_s
    print(f"goal ratio local/baseline >= 0.9: {'met' if ratio >= 0.9 else 'not met'} ({local.name}: {ratio:.2f})")
    for r in locals_:
        if r.threads_us:
            split = ", ".join(f"{group} {us:.0f} us" for group, us in sorted(r.threads_us.items()))
            print(f"per-thread CPU per request, wasmdev's own process ({r.name}): {split}")


if __name__ == "__main__":
    asyncio.run(main())
