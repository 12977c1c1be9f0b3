"""The dev loop's own bookkeeping for each manifest (the store holds what the user sees), and the
names apps run under.

An app runs under its declared `[application] name`, unless another manifest in the workspace
declares it too (every spin-python-sdk example is called `test`): then each runs under its
folder's name, and the log says so once, when the name is given.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from devenv.app_names import folder_app_name
from devenv.engine.changeset import AppRules
from devenv.engine.system_log import one_line, say
from devenv.errors import ManifestError
from devenv.manifest import guess_app_name, load_app
from devenv.model import AppSpec, BuiltApp
from devenv.store import actions as a
from devenv.store.store import Store

if TYPE_CHECKING:
    from devenv.config import Settings
    from devenv.engine.timetravel import DeployVia


@dataclass(frozen=True)
class PendingRollback:
    """A kept build waiting for the app's worker to deploy it; ``served`` says whether it went live."""

    built: BuiltApp
    via: DeployVia | None
    served: asyncio.Future[bool]


@dataclass
class AppSlot:
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
    rollbacks: list[PendingRollback] = field(default_factory=list)  # deployed by the worker, in order

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


class AppSlots:
    """Every manifest's slot, keyed by its resolved path; reads manifests into them and names them.

    ``on_renamed(old)`` is called when a manifest read renames an app that was loaded: the old
    name must stop serving (the loop forgets it and removes it from the target)."""

    def __init__(
        self, store: Store, root: Path, settings: Settings, on_renamed: Callable[[str], None]
    ) -> None:
        self._store = store
        self._root = root
        self._settings = settings
        self._on_renamed = on_renamed
        self._by_manifest: dict[Path, AppSlot] = {}

    def __iter__(self) -> Iterator[AppSlot]:
        return iter(self._by_manifest.values())

    def __len__(self) -> int:
        return len(self._by_manifest)

    def __contains__(self, manifest: Path) -> bool:
        return manifest in self._by_manifest

    def get(self, manifest: Path) -> AppSlot | None:
        return self._by_manifest.get(manifest)

    def pop(self, manifest: Path) -> AppSlot | None:
        return self._by_manifest.pop(manifest, None)

    def paths(self) -> set[Path]:
        """Every manifest with a slot (resolved paths)."""
        return set(self._by_manifest)

    def rules(self) -> dict[Path, AppRules]:
        """What each app watches, grants and is defined by, for classifying file events."""
        return {path: slot.rules for path, slot in self._by_manifest.items()}

    def add(self, manifest: Path, *, read: bool = True, name: str | None = None) -> AppSlot:
        manifest = manifest.resolve()
        declared = guess_app_name(manifest)
        slot = AppSlot(manifest_path=manifest, name=name or declared, declared=declared)
        if name is None and any(s.name == declared for s in self):  # stand-in taken
            slot.name = folder_app_name(manifest, self._root, self._names_taken(slot))
        self._by_manifest[manifest] = slot
        if read:
            self.read_manifest(slot)
        return slot

    def _names_taken(self, slot: AppSlot) -> set[str]:
        others = [s for s in self if s is not slot]
        return {s.name for s in others} | {s.declared for s in self}

    def _name_for(self, slot: AppSlot, declared: str, previous: str) -> str:
        """The name the app runs under: its declared name, unless another manifest declares it
        too (every spin-python-sdk example is called `test`); then its folder's. An app already
        running keeps its name when a newcomer clashes with it."""
        if not any(s is not slot and s.declared == declared for s in self):
            return declared
        if previous == declared and (slot.spec is not None or slot.name != declared):
            return slot.name  # running under it, or given it with the workspace (app_names)
        return folder_app_name(slot.manifest_path, self._root, self._names_taken(slot))

    def read_manifest(self, slot: AppSlot) -> bool:
        """Re-read a manifest into its slot; on error the old spec (and version) stays."""
        try:
            spec = load_app(slot.manifest_path)
        except ManifestError as err:
            self._store.dispatch(
                a.ManifestFailed(name=slot.name, manifest_path=slot.manifest_path, error=str(err))
            )
            say(self._store, slot.name, f"manifest error: {one_line(str(err))}", level="error")
            return False
        previous, slot.declared = slot.declared, spec.name
        name = self._name_for(slot, spec.name, previous)
        if name != spec.name:
            if name != slot.name or slot.spec is None:  # said once, when the name is given
                others = [str(s.manifest_path) for s in self if s is not slot and s.declared == spec.name]
                # Every spin-python-sdk example is named `test`: fourteen lines each naming thirteen
                # manifests would fill the log, so two are named and the rest counted.
                shown = ", ".join(others[:2]) + (f" and {len(others) - 2} more" if len(others) > 2 else "")
                say(
                    self._store,
                    name,
                    f"app name `{spec.name}` is also declared by {shown}: "
                    f"this app ({slot.manifest_path}) runs as `{name}`, named after its folder",
                    level="warn",
                )
            spec = dataclasses.replace(spec, name=name)
        if slot.spec is not None and spec.name != slot.name:
            # Renamed in the manifest: the old name stops serving, the new one starts fresh.
            self._on_renamed(slot.name)
            slot.serving = None
        elif (
            slot.spec is None
            and spec.name != slot.name
            and slot.name in self._store.state.apps
            and not any(s is not slot and s.name == slot.name for s in self)
        ):
            # The failure was listed under a stand-in name (folder, clash): drop that entry.
            self._store.dispatch(a.AppRemoved(name=slot.name))
        slot.name = spec.name
        reloaded = slot.spec is not None
        slot.spec = spec
        slot.disabled = not self._settings.app(spec.name).enabled
        if slot.disabled:
            say(self._store, spec.name, "disabled in wasmdev.toml (enabled = false): not built or served")
            return False
        self._store.dispatch(a.AppLoaded(spec=spec))
        if reloaded:
            say(self._store, spec.name, f"manifest reloaded: {spec.manifest_path}")
        return True
