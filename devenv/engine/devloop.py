"""The dev loop: load the workspace, build and deploy every app, then watch, rebuild, redeploy.

Shaped like Skaffold's dev runner: file events become a change set (changeset.py), and each app
has one worker that acts on its own dirty flag, so an app never builds twice at once:

- a change while the app is building sets the flag again: when the build ends, its result is
  dropped (a newer edit supersedes it) and exactly one rebuild follows with the newest source;
- a failed build or deploy leaves the version already serving in place (the store marks the
  app degraded and keeps the compiler's output);
- builds deploy in the order they were made, so a build older than the one serving never goes
  live.

Intents from the UI (rebuild, restart, pause/resume watching, shutdown) arrive as store actions
on any thread and are handed to this loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devenv.config import load_workspace
from devenv.engine.builder import Builder
from devenv.engine.changeset import AppRules, ChangeSet, classify
from devenv.engine.samplers import Prober, ResourceSampler
from devenv.engine.timetravel import DeployVia, TimeTravel
from devenv.engine.watcher import FileBatch, Watcher
from devenv.errors import BuildError, ManifestError, WasmdevError
from devenv.manifest import guess_app_name, load_app
from devenv.model import AppSpec, BuiltApp, EngineState, LogLine, LogStream
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.base import Target, UnsupportedApp

if TYPE_CHECKING:
    from devenv.config import Settings, Workspace

log = logging.getLogger(__name__)

_INTENTS = (a.RebuildRequested, a.RestartRequested, a.WatchPaused, a.WatchResumed, a.ShutdownRequested)


def one_line(text: str) -> str:
    """An error's lines joined for a one-line log entry ("what — fix: …")."""
    return " — ".join(part.strip() for part in text.splitlines() if part.strip())


@dataclass
class _AppSlot:
    """The loop's own bookkeeping for one manifest (the store holds what the user sees)."""

    manifest_path: Path
    name: str
    spec: AppSpec | None = None
    dirty: bool = False
    dirty_since: float | None = None  # when the earliest unbuilt edit was seen
    restart: bool = False
    disabled: bool = False  # `enabled = false` in wasmdev.toml: read, never built or deployed
    serving: BuiltApp | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None

    @property
    def rules(self) -> AppRules:
        if self.spec is None:
            return AppRules(self.name, self.manifest_path, ())
        return AppRules.of(self.spec)

    def mark_dirty(self, seen: float | None) -> None:
        if seen is not None:
            self.dirty_since = seen if self.dirty_since is None else min(self.dirty_since, seen)
        self.dirty = True
        self.wake.set()


class DevLoop:
    """Runs until ``stop()`` (or a ShutdownRequested action); ``ready`` is set once watching and the
    first builds have been scheduled."""

    def __init__(
        self,
        store: Store,
        workspace: Workspace,
        target: Target,
        *,
        watch: bool = True,
        builder: Builder | None = None,
        control: bool = True,
    ) -> None:
        self.store = store
        self.workspace = workspace
        self.settings: Settings = workspace.settings
        self.target = target
        self.config_path = self.settings.config_path
        self.watch = watch
        self.builder = builder or Builder(store, timeout_s=self.settings.build_timeout_s)
        self.ready = asyncio.Event()
        self._slots: dict[Path, _AppSlot] = {}
        self._stopped = asyncio.Event()
        self._paused = False
        self._held = ChangeSet()  # changes seen while watching was paused
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False  # stop() before run() took the loop
        self._watcher: Watcher | None = None
        self._tasks: list[asyncio.Task[Any]] = []  # the watch consumer and the samplers
        # Builds of different apps overlap, up to a bound: a slow toolchain (componentize-py takes
        # ~10 s) should not hold a 0.1 s WAT build back, but 20 apps must not start 20 compilers.
        self._build_slots = asyncio.Semaphore(max(4, os.cpu_count() or 4))
        # History, rollback, replay, load tests and the second-terminal endpoint (``control``).
        self.timetravel = TimeTravel(store, workspace, target, self.serve_kept, control=control)

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        unsubscribe = self.store.subscribe(self._on_action)
        if self._stop_requested:
            self._stopped.set()
        stopped = asyncio.create_task(self._stopped.wait())
        # Starting can take long (a cluster bootstrap): a shutdown must not wait for it to end.
        starting = asyncio.create_task(self._start())
        try:
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # TargetUnavailable and friends go to the caller
                self.ready.set()
                await stopped
        finally:
            unsubscribe()
            for task in (starting, stopped, *self._tasks):
                task.cancel()
            for slot in self._slots.values():
                if slot.worker is not None:
                    slot.worker.cancel()
            pending = [starting, stopped, *self._tasks]
            pending += [s.worker for s in self._slots.values() if s.worker is not None]
            await asyncio.gather(*pending, return_exceptions=True)
            if self._watcher is not None:
                await self._watcher.close()
            await self.target.close()

    async def _start(self) -> None:
        self.store.dispatch(a.WorkspaceLoaded(root=self.workspace.root, target=self.target.name))
        self._tasks.append(asyncio.create_task(self.timetravel.run(), name="time travel"))
        for manifest in self.workspace.manifests:
            self._add(Path(manifest))
        await self.target.start()
        if self.watch:
            quiet = max(0.005, self.settings.watch_debounce_ms / 1000)
            self._watcher = Watcher(
                self.workspace.root, quiet_s=quiet, cap_s=max(1.0, 20 * quiet), on_error=self._watch_failed
            )
            await self._watcher.start()
            self._tasks.append(asyncio.create_task(self._consume(self._watcher), name="devloop watch"))
        self._tasks += self._start_samplers()
        for slot in self._slots.values():
            self._start_worker(slot)
            slot.mark_dirty(None)
        if not self._slots:
            self._system("", f"no spin.toml found under {self.workspace.root}; watching for new apps")

    def stop(self) -> None:
        """Ask the loop to finish (from any thread, before or while it runs)."""
        self._stop_requested = True
        if self._loop is None or self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            self._loop.call_soon_threadsafe(self._stopped.set)

    def _watch_failed(self, err: BaseException) -> None:
        self._system(
            "",
            f"file watching stopped: {err} — fix: check {self.workspace.root} still exists "
            "(and fs.inotify.max_user_watches), then restart wasmdev; `r` still rebuilds by hand",
            level="error",
        )

    def _start_samplers(self) -> list[asyncio.Task[Any]]:
        tasks = []
        if hasattr(self.target, "usage"):
            tasks.append(asyncio.create_task(ResourceSampler(self.store, self.target).run(), name="sampler"))
        interval = self.settings.local.probe_interval_s
        if interval > 0:
            tasks.append(asyncio.create_task(Prober(self.store, interval).run(), name="prober"))
        return tasks

    # --- apps -----------------------------------------------------------------------------------

    def _add(self, manifest: Path) -> _AppSlot:
        manifest = manifest.resolve()
        slot = _AppSlot(manifest_path=manifest, name=guess_app_name(manifest))
        self._slots[manifest] = slot
        self._read_manifest(slot)
        return slot

    def _read_manifest(self, slot: _AppSlot) -> bool:
        """Re-read a manifest into its slot; on error the old spec (and version) stays."""
        try:
            spec = load_app(slot.manifest_path)
            clash = next(
                (s for s in self._slots.values() if s is not slot and s.spec and s.name == spec.name), None
            )
            if clash is not None:
                # Report it under its own name: the app already called that keeps serving, clean.
                if slot.spec is None:
                    slot.name = f"{spec.name} ({slot.manifest_path.parent.name})"
                raise ManifestError.at(
                    slot.manifest_path,
                    "application.name",
                    f"app name `{spec.name}` is already used by {clash.manifest_path}",
                    "give each app a unique [application] name",
                )
        except ManifestError as err:
            self.store.dispatch(
                a.ManifestFailed(name=slot.name, manifest_path=slot.manifest_path, error=str(err))
            )
            self._system(slot.name, f"manifest error: {one_line(str(err))}", level="error")
            return False
        if slot.spec is not None and spec.name != slot.name:
            # Renamed in the manifest: the old name stops serving, the new one starts fresh.
            self._forget(slot.name)
            removal = asyncio.get_running_loop().create_task(self._quiet_remove(slot.name))
            self._tasks.append(removal)
            removal.add_done_callback(self._tasks.remove)
            slot.serving = None
        elif slot.spec is None and spec.name != slot.name and slot.name in self.store.state.apps:
            # The failure was listed under a stand-in name (folder, clash): drop that entry.
            self.store.dispatch(a.AppRemoved(name=slot.name))
        slot.name = spec.name
        reloaded = slot.spec is not None
        slot.spec = spec
        slot.disabled = not self.settings.app(spec.name).enabled
        if slot.disabled:
            self._system(spec.name, "disabled in wasmdev.toml (enabled = false): not built or served")
            return False
        self.store.dispatch(a.AppLoaded(spec=spec))
        if reloaded:
            self._system(spec.name, f"manifest reloaded: {spec.manifest_path}")
        return True

    def _start_worker(self, slot: _AppSlot) -> None:
        if slot.worker is None:
            slot.worker = asyncio.create_task(self._work(slot), name=f"app {slot.name}")

    async def _remove(self, manifest: Path) -> None:
        slot = self._slots.pop(manifest, None)
        if slot is None:
            return
        if slot.worker is not None:
            slot.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await slot.worker
        self._forget(slot.name)
        with contextlib.suppress(Exception):
            await self.target.remove(slot.name)

    def _forget(self, name: str) -> None:
        self._system(name, "app removed")
        self.timetravel.forget(name)
        self.store.dispatch(a.AppRemoved(name=name))

    async def _quiet_remove(self, name: str) -> None:
        with contextlib.suppress(Exception):
            await self.target.remove(name)

    # --- the per-app worker: build, then deploy unless superseded -----------------------------

    async def _work(self, slot: _AppSlot) -> None:
        while True:
            await slot.wake.wait()
            slot.wake.clear()
            if slot.restart:
                slot.restart = False
                await self._restart(slot)
            if not slot.dirty or slot.spec is None or slot.disabled:
                continue
            slot.dirty, trigger, slot.dirty_since = False, slot.dirty_since, None
            spec = slot.spec
            try:
                async with self._build_slots:
                    started = time.monotonic()
                    built = await self.builder.build(spec, trigger_time=trigger)
                    took_ms = (time.monotonic() - started) * 1000
            except BuildError as err:
                self._system(spec.name, f"build failed: {one_line(str(err))}", level="error")
                continue
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a bug in a build step must not end the app's worker
                log.exception("build of %s crashed", spec.name)
                self._system(spec.name, f"build crashed: {err!r} (run with --debug)", level="error")
                continue
            if slot.dirty:
                self._system(spec.name, f"build {built.short_digest} superseded by a newer edit; rebuilding")
                continue
            self._system(spec.name, f"built {built.short_digest} in {took_ms:.0f} ms")
            await self._deploy(slot, built)

    async def _deploy(self, slot: _AppSlot, built: BuiltApp, via: DeployVia | None = None) -> None:
        name = built.spec.name
        self.store.dispatch(a.DeployStarted(app=name, digest=built.digest, ts=time.time()))
        try:
            result = await (via() if via is not None else self.target.deploy(built))
        except UnsupportedApp as err:
            self.store.dispatch(a.AppUnsupported(app=name, reason=str(err), ts=time.time()))
            self._system(name, f"not hosted on {self.target.name}: {one_line(str(err))}", level="warn")
            return
        except WasmdevError as err:
            self.store.dispatch(a.DeployFailed(app=name, digest=built.digest, error=str(err), ts=time.time()))
            self._system(name, f"deploy failed: {one_line(str(err))}", level="error")
            return
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.exception("deploy of %s crashed", name)
            error = f"deploy to {self.target.name} crashed: {err!r}\n  fix: run with --debug and report it"
            self.store.dispatch(a.DeployFailed(app=name, digest=built.digest, error=error, ts=time.time()))
            self._system(name, one_line(error), level="error")
            return
        now = time.time()
        e2s = (now - built.trigger_time) * 1000 if built.trigger_time is not None else None
        slot.serving = built
        self.store.dispatch(
            a.VersionServing(
                app=name,
                digest=built.digest,
                urls=result.urls,
                ts=now,
                edit_to_serving_ms=e2s,
                notes=result.notes,
            )
        )
        where = " ".join(result.urls) or "(no HTTP route)"
        timing = f" (edit→serving {e2s:.0f} ms)" if e2s is not None else ""
        self._system(name, f"serving {built.short_digest} at {where}{timing}")
        for note in result.notes:
            self._system(name, note, level="warn")
        await self.timetravel.deployed(built, served_at=now, edit_to_serving_ms=e2s)

    async def serve_kept(self, built: BuiltApp, via: DeployVia | None = None) -> bool:
        """Deploy a kept build again (a rollback: no build runs); True once it serves. A failure
        keeps what served before and is reported like any failed deploy."""
        slot = next((s for s in self._slots.values() if s.name == built.spec.name and not s.disabled), None)
        if slot is None:
            return False
        await self._deploy(slot, built, via)
        return slot.serving is built

    async def _restart(self, slot: _AppSlot) -> None:
        if slot.serving is None:
            slot.mark_dirty(None)  # nothing serving yet: a restart is a build
            return
        self._system(slot.name, "restarting")
        with contextlib.suppress(Exception):
            await self.target.remove(slot.name)
        await self._deploy(slot, slot.serving)

    # --- file events ----------------------------------------------------------------------------

    async def _consume(self, watcher: Watcher) -> None:
        async for batch in watcher.batches():
            await self._apply(self._classify(batch))

    def _classify(self, batch: FileBatch) -> ChangeSet:
        rules = {path: slot.rules for path, slot in self._slots.items()}
        return classify(batch.paths, rules, batch.first_seen, self.config_path)

    async def _apply(self, change: ChangeSet, *, forced: bool = False) -> None:
        if self._paused and not forced:
            self._held.merge(change)
            return
        if change.rediscover:
            await self._rediscover(change.config_changed)
        for manifest in change.reload:
            slot = self._slots.get(manifest)
            if slot is None:
                continue
            if not manifest.exists():
                await self._remove(manifest)
                continue
            if self._read_manifest(slot):
                self._start_worker(slot)
                slot.mark_dirty(change.first_seen)
        for slot in list(self._slots.values()):
            if slot.name in change.rebuild:
                slot.mark_dirty(change.first_seen)

    async def _rediscover(self, config_changed: bool = False) -> None:
        try:
            workspace = await asyncio.to_thread(load_workspace, self.workspace.root, self.config_path)
        except WasmdevError as err:
            self._system("", f"workspace: {one_line(str(err))}", level="error")
            return
        if config_changed:
            self._system("", "wasmdev.toml changed: apps reloaded; other settings apply after a restart")
        found = {Path(m).resolve() for m in workspace.manifests}
        for manifest in set(self._slots) - found:
            await self._remove(manifest)
        for manifest in sorted(found - set(self._slots)):
            slot = self._add(manifest)
            self._start_worker(slot)
            slot.mark_dirty(None)

    # --- intents ------------------------------------------------------------------------------

    def _on_action(self, _state: EngineState, action: a.Action) -> None:
        if isinstance(action, _INTENTS) and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._intent, action)

    def _intent(self, action: a.Action) -> None:
        match action:
            case a.RebuildRequested(app=app):
                # Re-read the manifest too: a rebuild by hand is also how a user retries an app
                # whose manifest failed, or picks up an edit made while watching was paused.
                chosen = {path for path, slot in self._slots.items() if app is None or slot.name == app}
                if chosen:
                    change = ChangeSet(reload=chosen)
                    asyncio.get_running_loop().create_task(self._apply(change, forced=True))
            case a.RestartRequested(app=app):
                for slot in self._slots.values():
                    if slot.name == app:
                        slot.restart = True
                        slot.wake.set()
            case a.WatchPaused():
                self._paused = True
                self._system("", "watching paused")
            case a.WatchResumed():
                self._paused = False
                self._system("", "watching resumed")
                held, self._held = self._held, ChangeSet()
                if held:
                    asyncio.get_running_loop().create_task(self._apply(held))
            case a.ShutdownRequested():
                self._stopped.set()

    def _system(self, app: str, text: str, level: str = "info") -> None:
        self.store.dispatch(
            a.LogEmitted(LogLine(ts=time.time(), app=app, stream=LogStream.SYSTEM, text=text, level=level))
        )
