"""The dev loop: load the workspace, build and deploy every app, then watch, rebuild, redeploy.

Shaped like Skaffold's dev runner: file events become a change set (changeset.py), and each app
has one worker that acts on its own dirty flag, so an app never builds twice at once:

- a change while the app is building cancels that build (its whole process group is killed, as
  Skaffold and Tilt do: a hung or slow build never holds the next one back) and one rebuild
  follows with the newest source; a build that ends before the cancel lands is dropped the same;
- a failed build or deploy leaves the version already serving in place (the store marks the
  app degraded and keeps the compiler's output);
- builds deploy in the order they were made, so a build older than the one serving never goes
  live;
- a change to a file the app grants its guest (``files``) redeploys the version serving, which
  re-stages the files; an app whose folder vanished (moved out of the workspace) is removed;
- file events that concern no app (a churning log file, a database) are dropped before the
  watcher's quiet timer, so they never hold anyone's build;
- a rollback (time travel) is handed to the app's worker too, so every deploy of one app is made
  by that one task: a rollback asked for during a build waits for that build's deploy and then
  supersedes it, and an edit saved after it builds and deploys after it.

Intents from the UI (rebuild, restart, pause/resume watching, shutdown) arrive as store actions
on any thread and are handed to this loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devenv.app_names import app_names, folder_app_name
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
from devenv.targets.base import ReportsUsage, Target, UnsupportedApp

if TYPE_CHECKING:
    from devenv.config import Settings, Workspace

log = logging.getLogger(__name__)

_INTENTS = (a.RebuildRequested, a.RestartRequested, a.WatchPaused, a.WatchResumed, a.ShutdownRequested)


def one_line(text: str) -> str:
    """An error's lines joined for a one-line log entry ("what — fix: …")."""
    return " — ".join(part.strip() for part in text.splitlines() if part.strip())


@dataclass(frozen=True)
class _PendingRollback:
    """A kept build waiting for the app's worker to deploy it; ``served`` says whether it went live."""

    built: BuiltApp
    via: DeployVia | None
    served: asyncio.Future[bool]


@dataclass
class _AppSlot:
    """The loop's own bookkeeping for one manifest (the store holds what the user sees)."""

    manifest_path: Path
    name: str  # the name it runs under (the declared one, or its folder's when that clashes)
    declared: str = ""  # its `[application] name` (guessed until the manifest is read)
    spec: AppSpec | None = None
    dirty: bool = False
    dirty_since: float | None = None  # when the earliest unbuilt edit was seen
    redeploy_since: float | None = None  # a granted file changed: redeploy what serves (no build)
    restart: bool = False
    disabled: bool = False  # `enabled = false` in wasmdev.toml: read, never built or deployed
    serving: BuiltApp | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None
    building: asyncio.Task[BuiltApp] | None = None  # the build running now, cancelled by a newer edit
    notes_said: tuple[str, ...] = ()  # the last deploy's notes, said in the log once, not on every save
    rollbacks: list[_PendingRollback] = field(default_factory=list)  # deployed by the worker, in order

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
        if self.building is not None and not self.building.done():
            self.building.cancel()

    def mark_redeploy(self, seen: float | None) -> None:
        stamp = seen if seen is not None else time.time()
        self.redeploy_since = stamp if self.redeploy_since is None else min(self.redeploy_since, stamp)
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
        # Every slot first, then every manifest read: apps that share a declared name are all
        # named after their folders, whichever comes first.
        manifests = [Path(m).resolve() for m in self.workspace.manifests]
        names = app_names({m: guess_app_name(m) for m in manifests}, self.workspace.root)
        slots = [self._add(m, read=False, name=names[m]) for m in manifests]
        for slot in slots:
            self._read_manifest(slot)
        await self.target.start()
        if self.watch:
            quiet = max(0.005, self.settings.watch_debounce_ms / 1000)
            self._watcher = Watcher(
                self.workspace.root,
                quiet_s=quiet,
                cap_s=max(1.0, 20 * quiet),
                on_error=self._watch_failed,
                relevant=self.relevant_paths,
            )
            await self._watcher.start()
            self._tasks.append(asyncio.create_task(self._consume(self._watcher), name="devloop watch"))
        self._tasks += self._start_samplers()
        for slot in self._slots.values():
            self._start_worker(slot)
            slot.mark_dirty(None)
        if not self._slots:
            self._system("", f"no spin.toml found under {self.workspace.root}; watching for new apps")

    @property
    def watcher(self) -> Watcher | None:
        """The file watcher, once watching has started (None without watching)."""
        return self._watcher

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
        if isinstance(self.target, ReportsUsage):
            tasks.append(asyncio.create_task(ResourceSampler(self.store, self.target).run(), name="sampler"))
        interval = self.settings.local.probe_interval_s
        if interval > 0:
            tasks.append(asyncio.create_task(Prober(self.store, interval).run(), name="prober"))
        return tasks

    # --- apps -----------------------------------------------------------------------------------

    def _add(self, manifest: Path, *, read: bool = True, name: str | None = None) -> _AppSlot:
        manifest = manifest.resolve()
        declared = guess_app_name(manifest)
        slot = _AppSlot(manifest_path=manifest, name=name or declared, declared=declared)
        if name is None and any(s.name == declared for s in self._slots.values()):  # stand-in taken
            slot.name = folder_app_name(manifest, self.workspace.root, self._names_taken(slot))
        self._slots[manifest] = slot
        if read:
            self._read_manifest(slot)
        return slot

    def _names_taken(self, slot: _AppSlot) -> set[str]:
        others = [s for s in self._slots.values() if s is not slot]
        return {s.name for s in others} | {s.declared for s in self._slots.values()}

    def _name_for(self, slot: _AppSlot, declared: str, previous: str) -> str:
        """The name the app runs under: its declared name, unless another manifest declares it
        too (every spin-python-sdk example is called `test`); then its folder's. An app already
        running keeps its name when a newcomer clashes with it."""
        if not any(s is not slot and s.declared == declared for s in self._slots.values()):
            return declared
        if previous == declared and (slot.spec is not None or slot.name != declared):
            return slot.name  # running under it, or given it with the workspace (app_names)
        return folder_app_name(slot.manifest_path, self.workspace.root, self._names_taken(slot))

    def _read_manifest(self, slot: _AppSlot) -> bool:
        """Re-read a manifest into its slot; on error the old spec (and version) stays."""
        try:
            spec = load_app(slot.manifest_path)
        except ManifestError as err:
            self.store.dispatch(
                a.ManifestFailed(name=slot.name, manifest_path=slot.manifest_path, error=str(err))
            )
            self._system(slot.name, f"manifest error: {one_line(str(err))}", level="error")
            return False
        previous, slot.declared = slot.declared, spec.name
        name = self._name_for(slot, spec.name, previous)
        if name != spec.name:
            if name != slot.name or slot.spec is None:  # said once, when the name is given
                others = [
                    str(s.manifest_path)
                    for s in self._slots.values()
                    if s is not slot and s.declared == spec.name
                ]
                self._system(
                    name,
                    f"app name `{spec.name}` is also declared by {', '.join(others)}: "
                    f"this app ({slot.manifest_path}) runs as `{name}`, named after its folder",
                    level="warn",
                )
            spec = dataclasses.replace(spec, name=name)
        if slot.spec is not None and spec.name != slot.name:
            # Renamed in the manifest: the old name stops serving, the new one starts fresh.
            self._forget(slot.name)
            removal = asyncio.get_running_loop().create_task(self._quiet_remove(slot.name))
            self._tasks.append(removal)
            removal.add_done_callback(self._tasks.remove)
            slot.serving = None
        elif (
            slot.spec is None
            and spec.name != slot.name
            and slot.name in self.store.state.apps
            and not any(s is not slot and s.name == slot.name for s in self._slots.values())
        ):
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

    async def _remove(self, manifest: Path, why: str = "") -> None:
        slot = self._slots.pop(manifest, None)
        if slot is None:
            return
        if slot.worker is not None:
            slot.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await slot.worker
        self._forget(slot.name, why)
        with contextlib.suppress(Exception):
            await self.target.remove(slot.name)

    def _forget(self, name: str, why: str = "") -> None:
        self._system(name, f"{why}: app removed" if why else "app removed")
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
            await self._roll_back(slot)
            if slot.restart:
                slot.restart = False
                await self._restart(slot)
            if slot.redeploy_since is not None and not slot.dirty and slot.serving is not None:
                seen, slot.redeploy_since = slot.redeploy_since, None
                self._system(slot.name, "granted files changed: redeploying (no build needed)")
                await self._deploy(slot, dataclasses.replace(slot.serving, trigger_time=seen))
            if not slot.dirty or slot.spec is None or slot.disabled:
                continue
            slot.dirty, trigger, slot.dirty_since = False, slot.dirty_since, None
            slot.redeploy_since = None  # the build's deploy stages the files as they are then
            spec = slot.spec
            try:
                async with self._build_slots:
                    started = time.monotonic()
                    slot.building = asyncio.create_task(self.builder.build(spec, trigger_time=trigger))
                    try:
                        built = await slot.building
                    finally:
                        slot.building = None
                    took_ms = (time.monotonic() - started) * 1000
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the worker itself is stopping (the build was cancelled with it)
                # A newer edit cancelled this build: build again, counting from the first edit.
                if trigger is not None:
                    slot.mark_dirty(trigger)
                self._system(spec.name, "build cancelled: a newer edit arrived; building again")
                continue
            except BuildError as err:
                self._system(spec.name, f"build failed: {one_line(str(err))}", level="error")
                continue
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
            if note not in slot.notes_said:
                self._system(name, note, level="warn")
        slot.notes_said = result.notes
        await self.timetravel.deployed(built, served_at=now, edit_to_serving_ms=e2s)

    async def serve_kept(self, built: BuiltApp, via: DeployVia | None = None) -> bool:
        """Deploy a kept build again (a rollback: no build runs); True once it serves. A failure
        keeps what served before and is reported like any failed deploy."""
        slot = next((s for s in self._slots.values() if s.name == built.spec.name and not s.disabled), None)
        if slot is None or slot.worker is None or slot.worker.done():
            return False
        pending = _PendingRollback(built, via, asyncio.get_running_loop().create_future())
        slot.rollbacks.append(pending)
        slot.wake.set()
        worker = slot.worker
        try:
            # The worker may be removed with its app meanwhile: then nothing deploys it.
            await asyncio.wait((pending.served, worker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not pending.served.done():
                pending.served.cancel()  # the worker passes over a rollback nobody waits for
        return not pending.served.cancelled() and pending.served.result()

    async def _roll_back(self, slot: _AppSlot) -> None:
        """Deploy the rollbacks asked for since the worker last looked (oldest first)."""
        while slot.rollbacks:
            pending = slot.rollbacks.pop(0)
            if pending.served.done():
                continue
            await self._deploy(slot, pending.built, pending.via)
            if not pending.served.done():
                pending.served.set_result(slot.serving is pending.built)

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

    def relevant_paths(self, paths: list[Path]) -> list[Path]:
        """The paths some app watches, grants, or is defined by (the rest never start the quiet
        timer: a log written every 20 ms held every build until the 1 s cap)."""
        rules = {path: slot.rules for path, slot in self._slots.items()}
        return [p for p in paths if classify([p], rules, None, self.config_path)]

    async def _apply(self, change: ChangeSet, *, forced: bool = False) -> None:
        if self._paused and not forced:
            self._held.merge(change)
            return
        if change.rediscover:
            await self._rediscover(change.config_changed)
        for manifest in change.vanished - change.reload:
            if manifest in self._slots and not manifest.exists():
                folder = manifest.parent
                await self._remove(manifest, f"app folder {folder} is gone (moved or deleted)")
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
            elif slot.name in change.redeploy:
                slot.mark_redeploy(change.first_seen)

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
