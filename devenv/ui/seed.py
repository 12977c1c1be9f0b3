"""A seeded, deterministic session: the same apps, logs, requests and samples every time.

Used by ``wasmdev screenshot`` (README images) and by the snapshot tests, so the pictures in the
README are exactly what the tests compare. Everything hangs off a fixed clock and a fixed RNG seed.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import MappingProxyType

from devenv.model import (
    AppSpec,
    BuiltApp,
    ComponentSpec,
    HttpTrigger,
    LogLine,
    LogStream,
    RequestRecord,
    ResourceSample,
    Route,
    StepState,
    StepStatus,
)
from devenv.store import Store
from devenv.store import actions as a

SEED_NOW = 1_790_000_000.0  # a fixed "now" (2026-09-21 14:13:20 UTC)
SEED = 7
WORKSPACE = Path("/home/dev/shop")

_RUST_ERROR = """\
   Compiling cart v0.3.1 (/home/dev/shop/cart)
error[E0308]: mismatched types
  --> src/lib.rs:42:20
   |
42 |     let total: u32 = price * quantity as f64;
   |                ---   ^^^^^^^^^^^^^^^^^^^^^^^ expected `u32`, found `f64`
   |                |
   |                expected due to this
error: could not compile `cart` (lib) due to 1 previous error"""


def _spec(name: str, components: dict[str, str]) -> AppSpec:
    """``components`` maps component id -> route."""
    root = WORKSPACE / name
    specs = {cid: ComponentSpec(id=cid, source=root / "target" / f"{cid}.wasm") for cid in components}
    triggers = tuple(HttpTrigger(route=Route(route), component=cid) for cid, route in components.items())
    return AppSpec(
        name=name,
        manifest_path=root / "spin.toml",
        components=MappingProxyType(specs),
        http_triggers=triggers,
    )


def _digest(rng: random.Random) -> str:
    return "sha256:" + "".join(rng.choice("0123456789abcdef") for _ in range(64))


def _serve(
    store: Store, spec: AppSpec, rng: random.Random, built_ago: float, port: int, e2s_ms: float
) -> str:
    now = SEED_NOW
    digest = _digest(rng)
    command = "cargo build --target wasm32-wasip1 --release"
    store.dispatch(a.BuildStarted(spec.name, command, now - built_ago - 2.4))
    store.dispatch(a.BuildSucceeded(spec.name, BuiltApp(spec, digest, {}, now - built_ago), now - built_ago))
    store.dispatch(a.DeployStarted(spec.name, digest, now - built_ago + 0.1))
    routes = [t.route.prefix for t in spec.http_triggers]
    urls = tuple(f"http://127.0.0.1:{port}{route}" for route in routes)
    store.dispatch(a.VersionServing(spec.name, digest, urls, now - built_ago + 0.3, e2s_ms))
    return digest


def seeded_store() -> Store:
    rng = random.Random(SEED)
    now = SEED_NOW
    store = Store()
    store.dispatch(a.WorkspaceLoaded(WORKSPACE, "local"))

    hello = _spec("hello-rust", {"hello": "/hello"})
    shop = _spec("shop", {"api": "/api/...", "static": "/..."})
    echo = _spec("py-echo", {"echo": "/echo"})
    for spec in (hello, shop, echo):
        store.dispatch(a.AppLoaded(spec))

    _serve(store, hello, rng, built_ago=200.0, port=3000, e2s_ms=612.0)
    _serve(store, shop, rng, built_ago=540.0, port=3001, e2s_ms=1480.0)
    # shop's latest edit broke the build: the previous version keeps serving.
    store.dispatch(a.BuildStarted("shop", "cargo build --target wasm32-wasip1 --release", now - 14.0))
    store.dispatch(
        a.BuildFailed(
            "shop",
            "cargo build --target wasm32-wasip1 --release",
            _RUST_ERROR,
            "build failed: cargo exited with status 101 (see the compiler output; fix src/lib.rs:42)",
            now - 11.5,
        )
    )
    # py-echo's first build is still running.
    store.dispatch(
        a.BuildStarted("py-echo", "componentize-py -w spin-http componentize app -o echo.wasm", now - 6.2)
    )

    _seed_logs(store, rng)
    _seed_requests(store, rng)
    _seed_samples(store, rng)
    return store


def _seed_logs(store: Store, rng: random.Random) -> None:
    now = SEED_NOW
    lines: list[LogLine] = [
        LogLine(now - 541, "shop", LogStream.BUILD, "   Compiling shop-api v0.3.0"),
        LogLine(
            now - 540,
            "shop",
            LogStream.SYSTEM,
            "built in 2.4s; serving on http://127.0.0.1:3001",
        ),
        LogLine(
            now - 201, "hello-rust", LogStream.BUILD, "    Finished `release` profile [optimized] in 1.92s"
        ),
        LogLine(now - 200, "hello-rust", LogStream.SYSTEM, "serving on http://127.0.0.1:3000/hello"),
    ]
    paths = {"hello-rust": ["/hello"], "shop": ["/api/cart", "/api/items", "/index.html", "/app.js"]}
    t = now - 60.0
    while t < now - 15:
        app = rng.choice(list(paths))
        path = rng.choice(paths[app])
        status = 200 if app == "hello-rust" or rng.random() > 0.1 else 500
        latency = rng.lognormvariate(1.6 if app == "shop" else 0.4, 0.5)
        lines.append(LogLine(t, app, LogStream.REQUEST, f"GET {path} {status} {latency:.1f}ms"))
        if status == 500 and app == "shop":
            lines.append(
                LogLine(
                    t + 0.001,
                    app,
                    LogStream.STDERR,
                    "error: inventory lookup failed: timeout after 250ms",
                    level="error",
                )
            )
        elif rng.random() < 0.35:
            lines.append(
                LogLine(
                    t + 0.001,
                    app,
                    LogStream.STDOUT,
                    f"handled {path} for session {rng.randrange(1000, 9999)}",
                )
            )
        t += rng.uniform(0.4, 1.6)
    lines += [
        LogLine(now - 14.0, "shop", LogStream.SYSTEM, "change in src/lib.rs: rebuilding"),
        LogLine(now - 12.0, "shop", LogStream.BUILD, "error[E0308]: mismatched types"),
        LogLine(
            now - 11.5,
            "shop",
            LogStream.SYSTEM,
            "build failed; the previous version keeps serving",
            level="error",
        ),
        LogLine(now - 6.2, "py-echo", LogStream.BUILD, "Component built successfully"),
        LogLine(now - 3.0, "hello-rust", LogStream.REQUEST, "GET /hello 200 1.3ms"),
        LogLine(now - 2.9, "hello-rust", LogStream.STDOUT, "Hello, Fermyon!"),
    ]
    for line in sorted(lines, key=lambda line: line.ts):
        store.dispatch(a.LogEmitted(line))


def _seed_requests(store: Store, rng: random.Random) -> None:
    now = SEED_NOW
    for app, component, mu in (("hello-rust", "hello", 0.4), ("shop", "api", 1.6)):
        t = now - 60.0
        while t < now:
            # A slow patch in the middle of the window, so the p95 line has a shape to show.
            slow = 1.0 if not (now - 35 < t < now - 25) else 1.8
            latency = rng.lognormvariate(mu * slow, 0.45)
            status = 200 if rng.random() > 0.03 else 500
            store.dispatch(a.RequestServed(RequestRecord(t, app, component, "GET", "/", status, latency)))
            t += rng.uniform(0.05, 0.3)


def _seed_samples(store: Store, rng: random.Random) -> None:
    now = SEED_NOW
    for app, base_cpu, base_mem in (("hello-rust", 3.0, 2.1), ("shop", 14.0, 18.5)):
        memory = base_mem * 1024 * 1024
        for i in range(150):
            ts = now - 300 + i * 2
            cpu = max(0.0, base_cpu + rng.gauss(0, base_cpu * 0.3) + (10 if 120 < i < 135 else 0))
            memory += rng.choice((0, 0, 0, 65536))  # linear memory only grows, one 64 KiB page at a time
            store.dispatch(a.ResourceSampled(ResourceSample(ts, app, cpu, int(memory), 4.0)))


def seeded_bootstrap_store() -> Store:
    """A cluster target half-way through its setup: two steps done, one running, one pending."""
    now = SEED_NOW
    store = Store()
    store.dispatch(a.WorkspaceLoaded(WORKSPACE, "k3d"))
    store.dispatch(a.AppLoaded(_spec("hello-rust", {"hello": "/hello"})))
    steps = (
        StepState("docker", "Check that Docker answers", StepStatus.DONE, now - 31.0, now - 30.6),
        StepState(
            "registry", "Start the local registry on 127.0.0.1:5000", StepStatus.DONE, now - 30.5, now - 27.9
        ),
        StepState(
            "cluster", "Create k3d cluster wasmdev", StepStatus.RUNNING, now - 12.3, detail="waiting for node"
        ),
        StepState("shim", "Install the Spin containerd shim and RuntimeClass"),
    )
    for step in steps:
        store.dispatch(a.BootstrapStepChanged(step))
    store.dispatch(
        a.LogEmitted(LogLine(now - 12.3, "hello-rust", LogStream.SYSTEM, "creating cluster wasmdev"))
    )
    return store
