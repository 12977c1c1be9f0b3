"""File events into slot changes: the watcher's batches, classified by the change set
(changeset.py), become rebuilds, redeploys, manifest reloads, new apps and removed ones.

- file events that concern no app (a churning log file, a database) are dropped before the
  watcher's quiet timer, so they never hold anyone's build;
- an app whose folder vanished (moved out of the workspace) is removed; a manifest that appears
  (or a wasmdev.toml that changes) has the workspace looked at again;
- changes seen while watching is paused are held, and applied when it resumes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from devenv.config import load_workspace
from devenv.engine.app_slots import AppSlots
from devenv.engine.app_worker import AppWorkers
from devenv.engine.changeset import ChangeSet, classify
from devenv.engine.system_log import one_line, say
from devenv.engine.watcher import FileBatch, Watcher
from devenv.errors import WasmdevError
from devenv.store.store import Store

RemoveApp = Callable[[Path, str], Awaitable[None]]
"""Removes the app of a manifest from the loop, the store and the target (the why, or "")."""


class FileEvents:
    """Applies change sets to the slots; ``remove`` takes an app away (the loop does that)."""

    def __init__(
        self,
        store: Store,
        root: Path,
        config_path: Path | None,
        slots: AppSlots,
        workers: AppWorkers,
        remove: RemoveApp,
    ) -> None:
        self.store = store
        self.root = root
        self.config_path = config_path
        self._slots = slots
        self._workers = workers
        self._remove = remove
        self._paused = False
        self._held = ChangeSet()  # changes seen while watching was paused

    async def consume(self, watcher: Watcher) -> None:
        """Apply the watcher's batches until it ends."""
        async for batch in watcher.batches():
            await self.apply(self._classify(batch))

    def _classify(self, batch: FileBatch) -> ChangeSet:
        return classify(batch.paths, self._slots.rules(), batch.first_seen, self.config_path)

    def relevant_paths(self, paths: list[Path]) -> list[Path]:
        """The paths some app watches, grants, or is defined by (the rest never start the quiet
        timer: a log written every 20 ms held every build until the 1 s cap)."""
        rules = self._slots.rules()
        return [p for p in paths if classify([p], rules, None, self.config_path)]

    def pause(self) -> None:
        """Hold changes until ``resume``."""
        self._paused = True

    def resume(self) -> ChangeSet:
        """Stop holding changes; the ones held meanwhile, for the caller to apply."""
        self._paused = False
        held, self._held = self._held, ChangeSet()
        return held

    async def apply(self, change: ChangeSet, *, forced: bool = False) -> None:
        """Act on a change set (``forced``: even while paused, as a rebuild by hand does)."""
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
                await self._remove(manifest, "")
                continue
            if self._slots.read_manifest(slot):
                self._workers.start(slot)
                slot.mark_dirty(change.first_seen)
        for slot in list(self._slots):
            if slot.name in change.rebuild:
                slot.mark_dirty(change.first_seen)
            elif slot.name in change.redeploy:
                slot.mark_redeploy(change.first_seen)

    async def _rediscover(self, config_changed: bool = False) -> None:
        try:
            workspace = await asyncio.to_thread(load_workspace, self.root, self.config_path)
        except WasmdevError as err:
            say(self.store, "", f"workspace: {one_line(str(err))}", level="error")
            return
        if config_changed:
            say(self.store, "", "wasmdev.toml changed: apps reloaded; other settings apply after a restart")
        found = {Path(m).resolve() for m in workspace.manifests}
        for manifest in self._slots.paths() - found:
            await self._remove(manifest, "")
        for manifest in sorted(found - self._slots.paths()):
            slot = self._slots.add(manifest)
            self._workers.start(slot)
            slot.mark_dirty(None)
