"""The local target: every app served by wasmtime on this machine, one port per app on 127.0.0.1.

Where: apps (WAGI and wasi:http) are served by a few serving processes (guest_procs.py: one GIL
each, so they scale past one core) when ``[local].guest_processes`` is above 0, the default on a
multi-core machine; every app when processes are off or unavailable is served by the in-process
server. Both deploy through one routine (deploy.py) and report through one typed schema
(messages.py). Either way this process compiles and checks each build
first, and binds each app's port itself, so errors read the same.

Ports and the listening sockets are ports.py's (``AppPorts``); what the servers report becomes
store actions in observer.py (``StoreObserver``); apps of serving processes gone for good move
into the in-process server in fallback.py (``ProcessFallback``). Everything that touches a
socket (the apps' ports, the serving processes' pipes, Spin's proxy) runs on the loop that
calls start(), the engine's; guests run on the server's guest threads, compiling and staging in
worker threads, so neither blocks that loop.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from devenv.errors import DeployError, TargetUnavailable
from devenv.frozen_builds import freeze_wasm
from devenv.model import BuiltApp
from devenv.runtime_config import workspace_runtime_config
from devenv.session_dirs import new_session_folder
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.base import DeployResult
from devenv.targets.local.backend import (
    BackendUnavailable,
    InProcessBackend,
    ProcessPoolBackend,
    ServingBackend,
)
from devenv.targets.local.compile_cache import CompileCache
from devenv.targets.local.deploy import VersionStager
from devenv.targets.local.executor import RequestLimits
from devenv.targets.local.fallback import ProcessFallback
from devenv.targets.local.guest_procs import GuestProcesses
from devenv.targets.local.host_settings import HostApiSettings, origin
from devenv.targets.local.observer import StoreObserver
from devenv.targets.local.ports import AppPorts
from devenv.targets.local.runtime import WasmRuntime
from devenv.targets.local.server import LocalServer
from devenv.targets.local.spin_apps import SpinApps
from devenv.targets.local.spin_cli import RuntimeChoice
from devenv.targets.local.usage import UsageCounters, UsageMeter
from devenv.targets.local.version_builder import VersionPlan

if TYPE_CHECKING:
    from devenv.config import Settings

__all__ = ["LocalTarget", "UsageCounters"]

DEFAULT_WORKERS = 4  # guest threads: enough to overlap wasm on 2 cores, few enough to stay warm
PROCESS_THREADS = 2  # guest threads in each serving process
SLOW_BUILD_NOTE_S = 2.0  # a deploy's compile taking longer is said in the app's log


class LocalTarget:
    name = "local"

    def __init__(
        self,
        store: Store,
        settings: Settings,
        app_ports: Mapping[str, int] | None = None,
        *,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.store = store
        self.settings = settings
        local = settings.local
        self.host: str = local.host
        self.limits = RequestLimits(
            timeout_s=float(local.request_timeout_s), memory_bytes=int(local.memory_limit_mb) * 1024 * 1024
        )
        self._ports = AppPorts(settings, self.host, app_ports)
        self._workers = workers
        self._runtime: WasmRuntime | None = None
        self._server: LocalServer | None = None
        self.cache: CompileCache | None = None
        self._usage = UsageMeter()
        self._observer = StoreObserver(store, self._usage)
        self._staging_root: Path | None = None
        self._processes: GuestProcesses | None = None
        # The serving processes' output (quoted if one dies) and the wasm they build from.
        self._process_dir: Path | None = None
        self._frozen: dict[str, Path] = {}  # app -> the copy of its wasm the processes serve
        self._versions = itertools.count(1)
        self._deploy_locks: dict[str, asyncio.Lock] = {}
        # Moves apps in from serving processes that are gone for good (made by start()).
        self._fallback: ProcessFallback | None = None
        self._stager: VersionStager | None = None
        self.recording = False
        # Apps only an installed `spin up` can serve (WASI 0.3 components), behind wasmdev's proxy.
        runtime_config = local.runtime_config
        if runtime_config is not None and not runtime_config.is_absolute():
            runtime_config = Path(settings.root) / runtime_config
        self._spin_apps = SpinApps(
            str(local.runtime),
            self.host,
            on_log=lambda line: store.dispatch(a.LogEmitted(line)),
            on_request=lambda record: store.dispatch(a.RequestServed(record)),
            on_exchange=lambda exchange: store.dispatch(a.RequestRecorded(exchange)),
            request_timeout_s=float(local.request_timeout_s),
            record_body_bytes=int(local.record_body_bytes),
            runtime_config=runtime_config,
        )

    # --- Target protocol ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            return
        try:
            self._runtime = WasmRuntime()
        except Exception as err:  # wasmtime's native library missing or broken
            raise TargetUnavailable(
                what=f"wasmtime could not start: {err}",
                where="local target",
                fix="reinstall wasmdev's dependencies: pip install --force-reinstall 'wasmtime>=50,<51'",
            ) from None
        cache_dir = Path(self.settings.local.cache_dir) / "compiled"
        self.cache = CompileCache(
            cache_dir, self._runtime.config_key, keep_builds=int(self.settings.local.keep_builds)
        )
        self._staging_root = new_session_folder(None, "wasmdev-files")
        self._stager = VersionStager(self._runtime, self.cache, self.limits, self._staging_root)
        if self.settings.local.guest_processes > 0:
            self._process_dir = new_session_folder(None, "wasmdev-serving")
            self._fallback = ProcessFallback(self._ports, self._deploy_locks, self._observer.note)
            self._processes = GuestProcesses(
                self.settings.local.guest_processes,
                PROCESS_THREADS,
                cache_dir=cache_dir,
                config_key=self._runtime.config_key,
                host=self.host,
                limits=self.limits,
                log_dir=self._process_dir,
                observer=self._observer,
                on_restart=self._fallback.process_exited,
                on_unserved=self._fallback.serve_here_now,
                record_body_bytes=int(self.settings.local.record_body_bytes),
            )
        self._server = LocalServer(
            self.host, self._observer, workers=self._workers, record_body_bytes=int(self.settings.local.record_body_bytes)
        )
        self._server.start(asyncio.get_running_loop())
        if self._fallback is not None and self._processes is not None:
            self._fallback.attach(self._server, self._stager, self._processes)
        if self.recording:  # turned on before the target started
            self.set_recording(True)
        if self._processes is not None:
            self._processes.launch()

    async def deploy(self, built: BuiltApp) -> DeployResult:
        if self._server is None:
            await self.start()
        app = built.spec.name
        lock = self._deploy_locks.setdefault(app, asyncio.Lock())
        async with lock:  # two builds of one app racing: the later deploy call wins, whole
            # No shortcut for a digest already serving: the digest covers the manifest and the
            # wasm, not the files the app grants, and a redeploy re-stages those. Compiling is a
            # cache hit, so a redeploy costs milliseconds.
            server, stager = self._server, self._stager
            assert server is not None and stager is not None
            # Decided from the components' import/export names before any compile: a Spin 4
            # component never reaches the embedded host, whose refusal would come minutes later.
            if await self._spin_apps.choose(built) is RuntimeChoice.SPIN:
                return await self._deploy_to_spin(server, built)
            # Back from Spin: it serves until this build is built and checked (below).
            from_spin = self._spin_apps.serves(app)
            notes: list[str] = []
            frozen: Path | None = None
            plan: VersionPlan | None = None
            chosen: ServingBackend | None = None
            try:
                if self._process_dir is not None:
                    # The processes build from a copy: the build output is overwritten by the
                    # next build, and a replacement process builds this one again later.
                    frozen = self._process_dir / "builds" / f"{app}-{next(self._versions)}"
                    try:
                        built = await asyncio.to_thread(freeze_wasm, built, frozen)
                    except OSError as err:
                        raise DeployError(
                            what=f"cannot copy the build for the serving processes: {err.strerror or err}",
                            where=str(frozen),
                            fix="free space in the temp folder (or set TMPDIR to a folder with room)",
                        ) from None
                # Bound before the build: the app's own address is part of what its components
                # are linked with (`http://self`). A build that fails frees it below.
                if from_spin:
                    port = self._spin_apps.port(app)  # Spin's proxy holds it until the swap
                else:
                    sock = self._ports.listen(app)
                    port = sock.getsockname()[1]
                host_apis = await asyncio.to_thread(self._host_apis, port)
                # Compiled and checked here in any case: a broken build fails with its message
                # before any serving process sees it, and their builds are cache hits.
                plan = await self._build_version(stager, built, host_apis)
                self._still_open(server, app)
                if from_spin:  # built and checked: now the port moves back from Spin's proxy, open
                    sock = await self._spin_apps.hand_over(app)
                    self._ports.adopt(app, sock)
                    self._ports.unmark(app)
                backends = self._backends
                for backend in backends:
                    try:
                        await backend.serve(built, plan, sock)
                    except BackendUnavailable as err:
                        notes.append(f"{err}; serving in wasmdev's own process (slower under load)")
                        continue
                    chosen = backend
                    break
                self._still_open(server, app)
                # Served by one backend only: an app that moved (processes gone) leaves the other.
                for other in backends:
                    if other is not chosen and other.serves(app):
                        await other.remove(app)
            except BaseException:
                if chosen is not None and not self._ports.is_bound(app):
                    await chosen.remove(app)  # retires it: its files go with it
                elif chosen is None and plan is not None:
                    plan.version.retire()  # this version never served: its files go
                if frozen is not None:
                    shutil.rmtree(frozen, ignore_errors=True)
                if not self._ports.is_bound(app):
                    self._ports.close(app)  # the app never served: free its port
                raise
            assert chosen is not None  # the in-process backend is never unavailable
            self._ports.mark_bound(app, port)
            previous = self._frozen.pop(app, None)
            if previous is not None:
                shutil.rmtree(previous, ignore_errors=True)
            if frozen is not None:
                if isinstance(chosen, ProcessPoolBackend):
                    self._frozen[app] = frozen  # a replacement process builds from it
                else:
                    shutil.rmtree(frozen, ignore_errors=True)  # compiled already: not read again
            self._usage.new_version(app)
            base = f"http://{self.host}:{port}"
            urls = tuple(base + p for p in plan.version.url_paths())
            return DeployResult(urls=urls, notes=tuple(plan.notes) + tuple(notes))

    async def _build_version(
        self, stager: VersionStager, built: BuiltApp, host_apis: HostApiSettings
    ) -> VersionPlan:
        """Stage, compile and link ``built`` in a worker thread; still at it after
        ``SLOW_BUILD_NOTE_S`` (new code compiling: tens of seconds for an 18 MB Python component
        on a busy machine), it says so in the app's log, so a first start does not look hung."""
        app = built.spec.name
        building = asyncio.ensure_future(
            asyncio.to_thread(stager.build, built, f"{app}-{built.short_digest}", host_apis, keep_as=app)
        )
        done, _ = await asyncio.wait({building}, timeout=SLOW_BUILD_NOTE_S)
        if not done:
            size = sum(Path(p).stat().st_size for p in built.wasm.values() if Path(p).is_file()) / 2**20
            self._observer.note(
                app,
                f"compiling {size:.0f} MB of wasm to native code: new code compiles once, and is "
                "cached on disk after (a rebuild of unchanged code, a rollback or a restart is a cache hit)",
                level="info",
            )
        return await building

    async def _deploy_to_spin(self, server: LocalServer, built: BuiltApp) -> DeployResult:
        """Serve ``built`` with `spin up` behind the app's port (deploy lock held)."""
        app = built.spec.name

        # `spin up` answers on its private port before the embedded host lets the port go
        # (release): a Spin that fails to start leaves the embedded version serving.
        async def release() -> socket.socket | None:
            # A copy of the listening socket keeps the port open across the handover.
            kept = self._ports.copy(app)
            await self._unserve(app)
            return kept

        result, port = await self._spin_apps.deploy(built, self.port_for(app), release=release)
        self._still_open(server, app)
        self._ports.mark_bound(app, port)
        self._usage.new_version(app)
        return result

    def _host_apis(self, port: int) -> HostApiSettings:
        """What Spin's host APIs get for a deploy: the runtime config file read anew (an edit
        applies on the next save; a broken one fails this deploy, naming the file and key) and
        the app's own address."""
        config = workspace_runtime_config(self.settings.local.runtime_config, self.settings.root)
        return HostApiSettings(runtime_config=config, self_origin=origin(self.host, port))

    @property
    def _backends(self) -> list[ServingBackend]:
        """Where a build may serve, in order of preference."""
        assert self._server is not None
        backends: list[ServingBackend] = []
        if self._processes is not None:
            backends.append(ProcessPoolBackend(self._processes))
        backends.append(InProcessBackend(self._server))
        return backends

    def _still_open(self, server: LocalServer, app: str) -> None:
        """Raise if close() ran while a deploy awaited (its server is stopped, or another)."""
        if self._server is not server:
            raise TargetUnavailable(
                what=f"the local target was closed while app `{app}` was being deployed",
                where="local target",
                fix="nothing to fix if wasmdev is shutting down; otherwise deploy again",
            )

    async def remove(self, app: str) -> None:
        # After a deploy of the app still compiling: otherwise that deploy, finishing later,
        # would open the port again and serve an app the engine removed.
        async with self._deploy_locks.setdefault(app, asyncio.Lock()):
            await self._unserve(app)
            await self._spin_apps.remove(app)
            self._ports.unmark(app)
            self._usage.forget(app)
            if self.cache is not None:
                self.cache.forget(app)

    async def _unserve(self, app: str) -> None:
        """Stop serving ``app`` from the embedded host and free its port (deploy lock held)."""
        if self._server is not None:
            for backend in self._backends:
                if backend.serves(app):
                    await backend.remove(app)
        self._ports.unmark(app)
        self._ports.close(app)
        frozen = self._frozen.pop(app, None)
        if frozen is not None:
            shutil.rmtree(frozen, ignore_errors=True)

    async def close(self) -> None:
        server, self._server = self._server, None
        fallback, self._fallback = self._fallback, None
        if fallback is not None:
            await fallback.close()
        await self._spin_apps.close()
        try:
            if server is not None:
                # Guests stuck in a loop end now, not at their deadline (up to request_timeout_s).
                interrupt = self._runtime.interrupt_all if self._runtime is not None else None
                if interrupt is not None:
                    interrupt()
                try:
                    if self._processes is not None:
                        await self._processes.stop()
                finally:
                    await server.close(interrupt)
        finally:  # a server that would not stop still leaves no ticker thread or staged files
            if self._runtime is not None:
                self._runtime.close()
            if self._staging_root is not None:
                shutil.rmtree(self._staging_root, ignore_errors=True)
                self._staging_root = None
            if self._process_dir is not None:
                shutil.rmtree(self._process_dir, ignore_errors=True)
                self._process_dir = None
            self._processes = None
            self._frozen.clear()
            self._ports.close_all()
            # wasmtime-py can panic at interpreter exit if stores/modules outlive this; drop them now.
            gc.collect()

    # --- what the engine polls -----------------------------------------------------------------------

    def usage(self, app: str) -> UsageCounters:
        """Cumulative guest CPU, requests and errors of ``app``, and its memory high-water mark."""
        if not self._ports.is_bound(app):
            raise KeyError(app)
        return self._usage.get(app)

    def port_for(self, app: str) -> int:
        return self._ports.port_for(app)

    def bound_port(self, app: str) -> int | None:
        return self._ports.bound_port(app)

    @property
    def _fallbacks(self) -> set[asyncio.Task[None]]:
        """The tasks moving apps in from dead serving processes (none without processes)."""
        return self._fallback.tasks if self._fallback is not None else set()

    # --- recording (the RecordsRequests ability) --------------------------------------------------

    def set_recording(self, on: bool) -> None:
        """Capture each real request as a ``RequestRecorded`` (requests carrying
        ``x-wasmdev-replay`` are served but not recorded)."""
        self.recording = on
        self._spin_apps.set_recording(on)
        if self._server is not None:
            loop = self._server.loop  # called from the dashboard's thread as well as the engine's
            for backend in self._backends:
                loop.call_soon_threadsafe(backend.set_recording, on)
