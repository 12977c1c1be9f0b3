"""Soak of the local target: many requests across a WAGI app and a wasi:http app, faults mixed in.

Healthy routes (the WAGI hello, the component's status route) share the apps with traps, loops
that run to the request deadline, 10 MB request bodies, and serving processes killed with
SIGKILL every ``--kill-every`` requests. It samples the memory (RSS) of wasmdev's process and of
every serving process, and prints, per process role, the RSS after warm-up and at the end and
their ratio (the goal: flat within 10 %), and the requests lost on healthy routes: any answer
but 200, split from the connections cut by a kill (those in flight on the killed process).
Figures, never pass/fail.

    python bench/soak.py [--requests 100000] [--connections 16] [--kill-every 20000]
                         [--guest-processes 2] [--no-component]

The client runs in this same process (one asyncio loop): wasmdev's RSS includes its few MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import wasmtime  # noqa: E402

from devenv.config import LocalSettings, Settings  # noqa: E402
from devenv.manifest import load_app  # noqa: E402
from devenv.model import BuiltApp  # noqa: E402
from devenv.store.store import Store  # noqa: E402
from devenv.targets.local.target import LocalTarget  # noqa: E402

TEN_MB = b"x" * (10 * 1024 * 1024)


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def wagi_app(workdir: Path) -> BuiltApp:
    shutil.copytree(REPO / "sample-apps" / "hello-wat", workdir, dirs_exist_ok=True)
    (workdir / "hello.wasm").write_bytes(wasmtime.wat2wasm((workdir / "hello.wat").read_text()))
    spec = load_app(workdir / "spin.toml")
    return BuiltApp(
        spec=spec, digest="sha256:soak-wat", wasm={"hello": workdir / "hello.wasm"}, built_at=time.time()
    )


def component_app() -> tuple[BuiltApp, Path] | None:
    try:
        from tests.targets.component_builds import COMPILED, sample_wasm

        wasm = sample_wasm("echo-py")
    except BaseException as err:  # noqa: BLE001 - pytest.skip when componentize-py is missing
        print(f"no component app in this soak: {err}")
        return None
    spec = load_app(REPO / "sample-apps" / "echo-py" / "spin.toml")
    return BuiltApp(
        spec=spec, digest="sha256:soak-py", wasm={"echo-py": wasm}, built_at=time.time()
    ), COMPILED.parent


# (weight in 1/943, app, method, path, body, healthy)
MIX = [
    (600, "hello-wat", "GET", "/hello/x", None, True),
    (250, "echo-py", "GET", "/echo-py/status/200", None, True),
    (60, "hello-wat", "GET", "/hello/trap", None, False),
    (30, "echo-py", "GET", "/echo-py/trap", None, False),
    (1, "hello-wat", "GET", "/hello/loop", None, False),  # each holds a thread for the 1 s deadline
    (2, "hello-wat", "POST", "/hello/echo", TEN_MB, False),
]


async def soak(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="wasmdev-soak-") as tmp:
        apps = [wagi_app(Path(tmp) / "hello-wat")]
        cache_dir = Path(tmp) / "cache"
        component = None if args.no_component else component_app()
        if component is not None:
            apps.append(component[0])
            cache_dir = component[1]
        mix = [m for m in MIX if any(a.spec.name == m[1] for a in apps)]
        weights = [m[0] for m in mix]
        local = LocalSettings(
            base_port=0, cache_dir=cache_dir, guest_processes=args.guest_processes, request_timeout_s=1.0
        )
        target = LocalTarget(
            Store(), Settings(root=Path(tmp), local=local), app_ports={a.spec.name: 0 for a in apps}
        )
        await target.start()
        for app in apps:
            await target.deploy(app)
        ports = {a.spec.name: target.bound_port(a.spec.name) for a in apps}
        outcomes: Counter[str] = Counter()
        samples: list[tuple[int, dict[str, int]]] = []
        sent = 0
        kills = 0
        rng = random.Random(8)

        def sample() -> None:
            pids = target._processes.pids if target._processes is not None else []
            rss = {"wasmdev": rss_bytes(os.getpid())}
            for pid in pids:  # each process on its own: a replacement starts small
                rss[f"serving process {pid}"] = rss_bytes(pid)
            samples.append((sent, rss))

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal sent, kills
            while sent < args.requests:
                sent += 1
                if args.kill_every and sent % args.kill_every == 0 and target._processes is not None:
                    pids = target._processes.pids
                    if pids:
                        os.kill(rng.choice(pids), signal.SIGKILL)
                        kills += 1
                if sent % max(1, args.requests // 50) == 0:
                    sample()
                _, app, method, path, body, healthy = rng.choices(mix, weights)[0]
                url = f"http://127.0.0.1:{ports[app]}{path}"
                try:
                    async with session.request(method, url, data=body) as r:
                        await r.read()
                        status = r.status
                except (TimeoutError, aiohttp.ClientConnectionError):
                    outcomes["healthy: connection cut" if healthy else "fault route: connection cut"] += 1
                    continue
                if healthy:
                    outcomes["healthy: 200" if status == 200 else f"healthy: LOST ({status})"] += 1
                else:
                    outcomes[f"fault route: {status}"] += 1

        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(worker(session) for _ in range(args.connections)))
        elapsed = time.monotonic() - started
        sample()
        await target.close()

    print(f"{args.requests} requests in {elapsed:.0f} s ({args.requests / elapsed:.0f} req/s), "
          f"{args.connections} connections, {kills} serving processes killed")  # fmt: skip
    for name, count in sorted(outcomes.items()):
        print(f"  {name:<32} {count:>9}")
    lost = sum(c for n, c in outcomes.items() if n.startswith("healthy: LOST"))
    cut = outcomes.get("healthy: connection cut", 0)
    print(f"lost on healthy routes: {lost}; connections cut (by kills: {kills}): {cut}")
    warm_index = len(samples) // 10
    roles = dict.fromkeys(role for _, rss in samples for role in rss)
    for role in roles:
        # After the warm-up, or after the role's own first two samples (a replacement process).
        series = [rss[role] for _, rss in samples if role in rss]
        first_seen = next(i for i, (_, rss) in enumerate(samples) if role in rss)
        # A process killed before the warm-up ends has fewer samples than that index.
        at = max(0, warm_index - first_seen) if first_seen < warm_index else 2
        start = series[min(at, len(series) - 1)]
        end, peak = series[-1], max(series)
        ratio = peak / start if start else float("nan")
        print(f"RSS {role:<22} {len(series):>3} samples: after warm-up {start / 2**20:6.1f} MB, "
              f"peak {peak / 2**20:6.1f} MB, end {end / 2**20:6.1f} MB, peak/warm-up {ratio:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--kill-every", type=int, default=20_000, help="SIGKILL a serving process every N requests"
    )
    parser.add_argument("--guest-processes", type=int, default=2)
    parser.add_argument("--no-component", action="store_true")
    asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    main()
