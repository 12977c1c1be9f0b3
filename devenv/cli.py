"""The ``wasmdev`` command: argument parsing, and the factories that wire store, engine, target, UI.

    wasmdev up [--target local|k3d|kube] [--headless] [--layout NAME] [--port N]
               [--context NAME] [--registry HOST/REPO] [--namespace NS] [cluster flags]
    wasmdev build [APP]
    wasmdev doctor
    wasmdev cluster create|delete|status|image [--name N] [--image IMG] [--shim V] [--k3s TAG] ...
    wasmdev screenshot [--layout NAME] [-o FILE]
    wasmdev history APP | rollback APP [DIGEST] | replay APP
    wasmdev load APP [--path P] [--duration 10s] [--connections 8] [--requests N]

``up`` opens the Textual dashboard (devenv.ui) on the main thread with the dev loop on an
EngineThread beside it; with ``--headless``, or when stdout is not a terminal, the loop runs on
the main thread and a printer writes one line per event. Every command takes ``-C DIR`` (the
workspace) and ``--debug``. Expected failures are
``WasmdevError``s, printed as "what / fix" with exit code 1; tracebacks only with ``--debug``.
Ctrl-C ends any command cleanly (exit 130). The time-travel commands (history, rollback, replay,
load), which talk to a running session, are in cli_timetravel.py.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devenv.cli_timetravel import add_timetravel_commands
from devenv.config import TARGETS
from devenv.errors import TargetUnavailable, WasmdevError
from devenv.store.store import Store

if TYPE_CHECKING:
    from devenv.config import Settings, Workspace
    from devenv.engine.devloop import DevLoop
    from devenv.targets.base import Target
    from devenv.targets.recording_front import ClusterTarget


# --- factories ----------------------------------------------------------------------------------


def load(args: argparse.Namespace) -> Workspace:
    from devenv.config import load_workspace

    root = Path(args.directory).resolve()
    if not root.is_dir():
        raise WasmdevError(
            what=f"workspace directory {root} does not exist", fix="pass an existing folder to -C"
        )
    workspace = load_workspace(root)
    overrides: dict[str, Any] = {}
    for flag, setting in _SETTING_FLAGS.items():
        value = getattr(args, flag, None)  # commands without the flag have no attribute
        if value is not None:
            overrides[setting] = value
    if not overrides:
        return workspace
    return dataclasses.replace(workspace, settings=workspace.settings.with_overrides(**overrides))


def make_target(name: str, store: Store, settings: Settings, app_names: Sequence[str]) -> Target:
    """The target the workspace runs on."""
    if name == "local":
        from devenv.config import app_ports
        from devenv.targets.local.target import LocalTarget

        return LocalTarget(store, settings, app_ports=app_ports(settings, list(app_names)))
    if name == "k3d":
        from devenv.targets.cluster.k3d_target import K3dTarget

        return _fronted(K3dTarget(store, settings), store, settings, app_names)
    if name == "kube":
        from devenv.targets.cluster.kube import kube_target_from_settings

        return _fronted(kube_target_from_settings(store, settings), store, settings, app_names)
    raise TargetUnavailable(
        what=f"unknown target {name!r}", where="--target", fix=f"use one of {', '.join(TARGETS)}"
    )


def _fronted(inner: ClusterTarget, store: Store, settings: Settings, app_names: Sequence[str]) -> Target:
    """A cluster target with each app's URL served on a wasmdev port on 127.0.0.1 that proxies to
    the ingress: requests are recorded for replay and fill the latency graph, as local ones do."""
    from devenv.config import app_ports
    from devenv.targets.recording_front import RecordingFront

    return RecordingFront(
        inner,
        store,
        app_ports(settings, list(app_names)),
        settings.local.host,
        record_body_bytes=settings.local.record_body_bytes,
    )


def _app_names(workspace: Workspace) -> list[str]:
    from devenv.app_names import app_names
    from devenv.manifest import guess_app_name

    # The names apps run under: apps that share a declared name are named after their folders.
    declared = {Path(m).resolve(): guess_app_name(Path(m)) for m in workspace.manifests}
    return list(app_names(declared, workspace.root).values())


def make_devloop(store: Store, workspace: Workspace, *, watch: bool = True) -> DevLoop:
    from devenv.engine.devloop import DevLoop

    target = make_target(workspace.settings.target, store, workspace.settings, _app_names(workspace))
    return DevLoop(store, workspace, target, watch=watch)


# --- commands -------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    workspace = load(args)
    store = Store()
    if not args.headless:
        if sys.stdout.isatty() and sys.stdin.isatty():
            return run_dashboard(args, store, workspace)
        # Piped or under CI: a full-screen UI would only garble the output.
        print("wasmdev: not a terminal, running headless (pass --headless to say so)", file=sys.stderr)
    from devenv.engine.headless import attach

    attach(store, sys.stdout)
    devloop = make_devloop(store, workspace)
    return asyncio.run(_run_until_signal(devloop))


def run_dashboard(args: argparse.Namespace, store: Store, workspace: Workspace) -> int:
    """The Textual dashboard on the main thread, the dev loop on an EngineThread beside it."""
    from devenv.engine.runner import EngineThread
    from devenv.ui.app import run_dashboard as run_tui
    from devenv.ui.layouts import DEFAULT_LAYOUT, UnknownLayout, discover_layouts

    layout = args.layout or DEFAULT_LAYOUT
    layouts = discover_layouts(workspace.root)
    try:
        # Before the engine starts: a typo in --layout must not first start builds or a cluster.
        layouts.require(layout)
    except UnknownLayout as err:
        raise WasmdevError(
            what=str(err), where="--layout", fix="pick a listed layout, or add LAYOUT.tcss to ./layouts"
        ) from None
    engine = EngineThread(store, lambda: make_devloop(store, workspace)).start()
    try:
        run_tui(store, layout=layout, workspace=workspace.root, layouts=layouts)
    finally:
        engine.stop()
    # E.g. the target could not start: printed (a WasmdevError without a traceback) once the
    # screen is gone.
    if engine.error is not None and not isinstance(engine.error, KeyboardInterrupt | asyncio.CancelledError):
        raise engine.error
    return 0


async def _run_until_signal(devloop: DevLoop) -> int:
    loop = asyncio.get_running_loop()
    # SIGTERM (from a supervisor or a test) shuts down as cleanly as Ctrl-C does.
    for sig in (signal.SIGTERM,):
        try:
            loop.add_signal_handler(sig, devloop.stop)
        except (NotImplementedError, RuntimeError):  # not on the main thread / not on this OS
            pass
    await devloop.run()
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from devenv.engine.build_all import build_once
    from devenv.engine.headless import attach

    workspace = load(args)
    if not workspace.manifests:
        raise WasmdevError(
            what="no spin.toml found",
            where=str(workspace.root),
            fix="run it in a folder with Spin apps, or pass -C DIR",
        )
    store = Store()
    attach(store, sys.stdout)
    failures = asyncio.run(build_once(store, workspace, args.app))
    return 1 if failures else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from devenv.engine.doctor import failed, format_checks, run_checks
    from devenv.manifest import load_app

    specs = []
    unreadable: list[str] = []
    cluster_settings = None
    try:
        workspace = load(args)
        cluster_settings = workspace.settings.cluster
        for manifest in workspace.manifests:
            try:
                specs.append(load_app(Path(manifest)))
            except WasmdevError as err:
                unreadable.append(str(err))
    except WasmdevError as err:
        unreadable.append(str(err))
    checks = run_checks(specs, cluster_settings=cluster_settings)
    print(format_checks(checks))
    for problem in unreadable:
        print(f"MISSING  manifest: {problem}")
    return 1 if failed(checks) or unreadable else 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from devenv.targets.cluster.commands import (
        cluster_create,
        cluster_delete,
        cluster_image,
        cluster_status,
        run,
    )

    workspace = load(args)
    action = {
        "create": cluster_create,
        "delete": cluster_delete,
        "status": cluster_status,
        "image": cluster_image,
    }[args.action]
    return run(action, workspace.settings.cluster)


def cmd_screenshot(args: argparse.Namespace) -> int:
    """Render a seeded, deterministic session in a layout to SVG (and PNG when cairosvg is there)."""
    from devenv.ui.layouts import UnknownLayout
    from devenv.ui.screenshot import render_screenshot

    output = Path(args.output or f"wasmdev-{args.layout}.svg")
    try:
        svg = render_screenshot(args.layout, output, (args.width, args.height), scenario=args.scenario)
    except UnknownLayout as err:
        raise WasmdevError(what=str(err), where="--layout", fix="pick a listed layout") from None
    print(svg)
    return 0


# --- parsing --------------------------------------------------------------------------------------

# CLI flag (argparse dest) -> Settings.with_overrides name. Flags win over wasmdev.toml.
_SETTING_FLAGS = {
    "target": "target",
    "port": "local_base_port",
    "runtime_config_file": "local_runtime_config",
    "context": "kube_context",
    "registry": "kube_registry",
    "namespace": "kube_namespace",
    "insecure_registry": "kube_insecure_registry",
    "cluster_name": "cluster_name",
    "image": "cluster_image",
    "agents": "cluster_agents",
    "http_port": "cluster_http_port",
    "api_port": "cluster_api_port",
    "registry_port": "cluster_registry_port",
    "shim": "cluster_shim",
    "k3s": "cluster_k3s",
}


def _cluster_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("k3d cluster (wasmdev.toml [cluster])")
    group.add_argument("--name", dest="cluster_name", metavar="NAME", help="cluster name (default wasmdev)")
    group.add_argument("--image", metavar="IMAGE", help="k3d node image carrying the Spin shim")
    group.add_argument("--agents", type=int, metavar="N", help="agent nodes besides the server")
    group.add_argument("--http-port", type=_port, metavar="N", help="host port of the cluster's ingress")
    group.add_argument("--api-port", type=_port, metavar="N", help="host port of the Kubernetes API")
    group.add_argument("--registry-port", type=_port, metavar="N", help="host port of the k3d registry")
    group.add_argument("--shim", metavar="VERSION", help="containerd-shim-spin release of a built node image")
    group.add_argument("--k3s", metavar="TAG", help="rancher/k3s tag of a built node image")
    return flags


def _kube_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("existing cluster (--target kube; wasmdev.toml [kube])")
    group.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    group.add_argument("--registry", metavar="HOST/REPO", help="registry the cluster pulls builds from")
    group.add_argument("--namespace", metavar="NS", help="namespace to deploy into (default: default)")
    group.add_argument(
        "--insecure-registry", action="store_true", default=None, help="push to the registry over plain HTTP"
    )
    return flags


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is out of range: use 1 to 65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-C", dest="directory", metavar="DIR", default=argparse.SUPPRESS, help="workspace folder"
    )
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    parser = argparse.ArgumentParser(
        prog="wasmdev",
        description="Build, run, watch and hot-redeploy WebAssembly (Spin) apps.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = sub.add_parser(
        "up",
        parents=[common, _kube_flags(), _cluster_flags()],
        help="build, run and watch every app in the workspace",
    )
    up.add_argument(
        "--target", choices=TARGETS, default=None, help="where apps run (default: wasmdev.toml, else local)"
    )
    up.add_argument("--headless", action="store_true", help="no dashboard: print events to stdout")
    up.add_argument(
        "--layout", metavar="NAME", default=None, help="dashboard layout (side-by-side, logs, metrics)"
    )
    up.add_argument("--port", type=_port, metavar="N", default=None, help="first port of the local target")
    up.add_argument(
        "--runtime-config-file",
        type=lambda p: Path(p).expanduser().resolve(),
        metavar="FILE",
        default=None,
        help="Spin runtime config (key_value_store / sqlite_database tables) for the local target",
    )
    up.set_defaults(func=cmd_up)

    build = sub.add_parser("build", parents=[common], help="build every app (or APP) once")
    build.add_argument("app", nargs="?", metavar="APP", help="the app to build (default: all)")
    build.set_defaults(func=cmd_build)

    doctor = sub.add_parser("doctor", parents=[common], help="what is installed and missing, with fixes")
    doctor.set_defaults(func=cmd_doctor)

    cluster = sub.add_parser(
        "cluster", parents=[common, _cluster_flags()], help="create, delete or inspect the local k3d cluster"
    )
    cluster.add_argument("action", choices=("create", "delete", "status", "image"))
    cluster.set_defaults(func=cmd_cluster)
    shot = sub.add_parser(
        "screenshot", parents=[common], help="render a seeded dashboard session to SVG (and PNG)"
    )
    shot.add_argument("--layout", metavar="NAME", default="side-by-side")
    shot.add_argument("--output", "-o", metavar="FILE", default=None, help="default: wasmdev-LAYOUT.svg")
    shot.add_argument("--width", type=int, default=160, help="terminal columns")
    shot.add_argument("--height", type=int, default=48, help="terminal rows")
    shot.add_argument("--scenario", choices=("session", "bootstrap"), default="session")
    shot.set_defaults(func=cmd_screenshot)
    add_timetravel_commands(sub, common)  # history, rollback, replay, load (cli_timetravel.py)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.directory = getattr(args, "directory", ".")
    args.debug = getattr(args, "debug", False)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("wasmdev: stopped", file=sys.stderr)
        return 130
    except WasmdevError as err:
        if args.debug:
            raise
        print(f"wasmdev: {err}", file=sys.stderr)
        return 1
