"""The dev loop: load the workspace, build and deploy every app, then watch, rebuild, redeploy.

Shaped like Skaffold's dev runner: file events become a change set (file_events.py, through
changeset.py), and each app has one worker that acts on its own dirty flag (app_worker.py), so an
app never builds twice at once; each app's bookkeeping and the name it runs under live in its slot
(app_slots.py). This module coordinates them: it starts the target, the watcher and the samplers,
removes apps, and hands rollbacks (time travel) to the app's worker.

Intents from the UI (rebuild, restart, pause/resume watching, shutdown) arrive as store actions
on any thread and are handed to this loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devenv.app_names import app_names
from devenv.engine.app_slots import AppSlots
from devenv.engine.app_worker import AppWorkers
from devenv.engine.builder import Builder
from devenv.engine.changeset import ChangeSet
from devenv.engine.file_events import FileEvents
from devenv.engine.samplers import Prober, ResourceSampler
from devenv.engine.system_log import say
from devenv.engine.timetravel import DeployVia, TimeTravel
from devenv.engine.watcher import Watcher
from devenv.manifest import guess_app_name
from devenv.model import BuiltApp, EngineState
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.base import ReportsUsage, Target

if TYPE_CHECKING:
    from devenv.config import Settings, Workspace

_INTENTS = (a.RebuildRequested, a.RestartRequested, a.WatchPaused, a.WatchResumed, a.ShutdownRequested)


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
        self._stopped = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False  # stop() before run() took the loop
        self._watcher: Watcher | None = None
        self._tasks: list[asyncio.Task[Any]] = []  # the watch consumer and the samplers
        # History, rollback, replay, load tests and the second-terminal endpoint (``control``).
        self.timetravel = TimeTravel(store, workspace, target, self.serve_kept, control=control)
        self._slots = AppSlots(store, workspace.root, self.settings, self._renamed)
        self._workers = AppWorkers(store, target, self.builder, self.timetravel)
        self._events = FileEvents(
            store, workspace.root, self.config_path, self._slots, self._workers, self._remove
        )

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
            for slot in self._slots:
                if slot.worker is not None:
                    slot.worker.cancel()
            pending = [starting, stopped, *self._tasks]
            pending += [s.worker for s in self._slots if s.worker is not None]
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
        slots = [self._slots.add(m, read=False, name=names[m]) for m in manifests]
        for slot in slots:
            self._slots.read_manifest(slot)
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
            self._tasks.append(asyncio.create_task(self._events.consume(self._watcher), name="devloop watch"))
        self._tasks += self._start_samplers()
        for slot in self._slots:
            self._workers.start(slot)
            slot.mark_dirty(None)
        if not self._slots:
            say(self.store, "", f"no spin.toml found under {self.workspace.root}; watching for new apps")

    @property
    def watcher(self) -> Watcher | None:
        """The file watcher, once watching has started (None without watching)."""
        return self._watcher

    def relevant_paths(self, paths: list[Path]) -> list[Path]:
        """The paths some app watches, grants, or is defined by (see FileEvents.relevant_paths)."""
        return self._events.relevant_paths(paths)

    def stop(self) -> None:
        """Ask the loop to finish (from any thread, before or while it runs)."""
        self._stop_requested = True
        if self._loop is None or self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            self._loop.call_soon_threadsafe(self._stopped.set)

    def _watch_failed(self, err: BaseException) -> None:
        say(
            self.store,
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

    # --- apps leaving -------------------------------------------------------------------------

    async def _remove(self, manifest: Path, why: str = "") -> None:
        slot = self._slots.pop(manifest)
        if slot is None:
            return
        await self._workers.stop(slot)
        self._forget(slot.name, why)
        await self._quiet_remove(slot.name)

    def _renamed(self, old: str) -> None:
        """An app was renamed in its manifest: the old name stops serving."""
        self._forget(old)
        removal = asyncio.get_running_loop().create_task(self._quiet_remove(old))
        self._tasks.append(removal)
        removal.add_done_callback(self._tasks.remove)

    def _forget(self, name: str, why: str = "") -> None:
        say(self.store, name, f"{why}: app removed" if why else "app removed")
        self.timetravel.forget(name)
        self.store.dispatch(a.AppRemoved(name=name))

    async def _quiet_remove(self, name: str) -> None:
        with contextlib.suppress(Exception):
            await self.target.remove(name)

    # --- time travel ----------------------------------------------------------------------------

    async def serve_kept(self, built: BuiltApp, via: DeployVia | None = None) -> bool:
        """Deploy a kept build again (a rollback: no build runs); True once it serves. A failure
        keeps what served before and is reported like any failed deploy."""
        slot = next((s for s in self._slots if s.name == built.spec.name and not s.disabled), None)
        if slot is None:
            return False
        return await self._workers.serve_kept(slot, built, via)

    # --- intents ------------------------------------------------------------------------------

    def _on_action(self, _state: EngineState, action: a.Action) -> None:
        if isinstance(action, _INTENTS) and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._intent, action)

    def _intent(self, action: a.Action) -> None:
        match action:
            case a.RebuildRequested(app=app):
                # Re-read the manifest too: a rebuild by hand is also how a user retries an app
                # whose manifest failed, or picks up an edit made while watching was paused.
                chosen = {slot.manifest_path for slot in self._slots if app is None or slot.name == app}
                if chosen:
                    change = ChangeSet(reload=chosen)
                    asyncio.get_running_loop().create_task(self._events.apply(change, forced=True))
            case a.RestartRequested(app=app):
                for slot in self._slots:
                    if slot.name == app:
                        slot.restart = True
                        slot.wake.set()
            case a.WatchPaused():
                self._events.pause()
                say(self.store, "", "watching paused")
            case a.WatchResumed():
                held = self._events.resume()
                say(self.store, "", "watching resumed")
                if held:
                    asyncio.get_running_loop().create_task(self._events.apply(held))
            case a.ShutdownRequested():
                self._stopped.set()
