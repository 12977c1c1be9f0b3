"""Build history: the last N builds of each app, kept ready to serve again (time travel).

A build's wasm is copied ("frozen") into the session's history folder when it is kept, because
the build's own output is overwritten by the next build. A rollback hands the target's one deploy
routine that frozen ``BuiltApp``: no build runs, and compiling is a compile-cache hit (the cache
is keyed by the wasm's bytes).

What is not frozen: the files an app grants its components (``files = [...]``). They are the
app's source assets, often large (a static site), and a rollback re-stages them from the
workspace as they are now. A rollback brings back the code and the manifest of a build, not the
state of the assets; the digest (manifest + wasm) says which code serves.

Disk use is bounded: at most ``keep`` builds per app (their wasm only), under
``<workspace>/.wasmdev/history/session-<pid>-<id>``, removed when the session ends; a folder left by
a session that died is removed by the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import uuid
from pathlib import Path

from devenv.engine.changeset import is_ignored
from devenv.errors import WasmdevError
from devenv.frozen_builds import freeze_files, freeze_wasm, granted_paths
from devenv.model import BuiltApp, KeptBuild
from devenv.session_dirs import remove_dead_sessions
from devenv.store import actions as a
from devenv.store.store import Store

STATE_DIR = ".wasmdev"  # the workspace's state folder (history, the control socket)
MAX_SNAPSHOT_FILES = 5_000  # a source tree bigger than this is summarised by its first files


def state_dir(workspace: Path) -> Path:
    return Path(workspace) / STATE_DIR


SourceSnapshot = dict[str, tuple[int, int]]  # relative path -> (mtime_ns, size)


def snapshot_sources(root: Path, outputs: frozenset[str] = frozenset()) -> SourceSnapshot:
    """What the app's source files look like now, to say which changed between two builds;
    ``outputs`` (relative paths of the builds' own wasm) are not sources."""
    found: SourceSnapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if not is_ignored(rel_dir / d)]
        for name in filenames:
            rel = rel_dir / name
            if is_ignored(rel) or rel.as_posix() in outputs:
                continue
            with contextlib.suppress(OSError):
                st = (Path(dirpath) / name).stat()
                found[rel.as_posix()] = (st.st_mtime_ns, st.st_size)
            if len(found) >= MAX_SNAPSHOT_FILES:
                return found
    return found


def changed_files(before: SourceSnapshot | None, after: SourceSnapshot) -> tuple[str, ...]:
    if before is None:
        return ()
    keys = set(before) | set(after)
    return tuple(sorted(k for k in keys if before.get(k) != after.get(k)))


@dataclasses.dataclass
class _Entry:
    info: KeptBuild
    built: BuiltApp  # wasm paths point at the frozen copies
    folder: Path


class BuildHistory:
    """The kept builds of every app, newest first. Used on the engine's loop only."""

    def __init__(self, store: Store, workspace: Path, keep: int = 10) -> None:
        self.store = store
        self.keep = max(1, keep)
        base = state_dir(workspace) / "history"
        if base.is_dir():  # made when a build is first kept: a read-only workspace still serves
            remove_dead_sessions(base, "session")
        # Per session, not per process: two loops in one process (tests) must not share a folder.
        self.root = base / f"session-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._entries: dict[str, list[_Entry]] = {}
        self._snapshots: dict[str, SourceSnapshot] = {}
        self._folders = 0

    async def record(
        self, built: BuiltApp, *, served_at: float | None, edit_to_serving_ms: float | None, image: str = ""
    ) -> KeptBuild:
        """Keep ``built`` (which just went live when ``served_at`` is set); a digest already kept
        is only marked as served again."""
        app = built.spec.name
        entries = self._entries.setdefault(app, [])
        for entry in entries:
            if entry.info.digest == built.digest:
                entry.info = dataclasses.replace(
                    entry.info,
                    served=entry.info.served or served_at is not None,
                    served_at=served_at or entry.info.served_at,
                    image=image or entry.info.image,
                )
                self._publish(app)
                return entry.info
        self._folders += 1
        folder = self.root / app / f"{built.short_digest}-{self._folders}"
        snapshot = await asyncio.to_thread(snapshot_sources, built.spec.root, build_outputs(built))
        granted = await asyncio.to_thread(granted_paths, built.spec)
        frozen = await asyncio.to_thread(freeze_build, built, folder, granted)
        live_files = bool(granted) and frozen.files_root is None  # granted files, too many to keep
        info = KeptBuild(
            app=app,
            digest=built.digest,
            built_at=built.built_at,
            changed=changed_files(self._snapshots.get(app), snapshot),
            edit_to_serving_ms=edit_to_serving_ms,
            served=served_at is not None,
            served_at=served_at,
            image=image,
            live_files=live_files,
        )
        self._snapshots[app] = snapshot
        entries.insert(0, _Entry(info, frozen, folder))
        for dropped in entries[self.keep :]:
            shutil.rmtree(dropped.folder, ignore_errors=True)
        del entries[self.keep :]
        self._publish(app)
        return info

    def mark_served(self, app: str, digest: str, ts: float) -> None:
        for entry in self._entries.get(app, ()):
            if entry.info.digest == digest:
                entry.info = dataclasses.replace(entry.info, served=True, served_at=ts)
                self._publish(app)

    def builds(self, app: str) -> tuple[KeptBuild, ...]:
        return tuple(e.info for e in self._entries.get(app, ()))

    def choose(self, app: str, digest: str | None, serving: str | None) -> tuple[KeptBuild, BuiltApp]:
        """The kept build a rollback serves: the one ``digest`` names (a prefix of its hex
        digits is enough), else the one built before the build now serving."""
        entries = self._entries.get(app, [])
        if not entries:
            raise WasmdevError(
                what=f"app {app} has no kept builds yet",
                fix="wait for its first build to serve; every later build is kept too",
            )
        if digest:
            wanted = digest.lower().removeprefix("sha256:")
            matches = [e for e in entries if e.info.digest.split(":", 1)[-1].startswith(wanted)]
            if len(matches) != 1:
                kept = ", ".join(e.info.short_digest for e in entries)
                problem = "matches no kept build" if not matches else "matches several kept builds"
                raise WasmdevError(
                    what=f"app {app}: digest {digest} {problem}",
                    fix=f"use one of the kept builds (`wasmdev history {app}`): {kept}",
                )
            return matches[0].info, matches[0].built
        index = next((i for i, e in enumerate(entries) if e.info.digest == serving), -1)
        if index + 1 >= len(entries):
            raise WasmdevError(
                what=f"app {app}: no kept build older than the one serving"
                + (f" ({entries[index].info.short_digest})" if index >= 0 else ""),
                fix=f"name one with `wasmdev rollback {app} DIGEST` (see `wasmdev history {app}`)",
            )
        entry = entries[index + 1]
        return entry.info, entry.built

    def forget(self, app: str) -> None:
        for entry in self._entries.pop(app, []):
            shutil.rmtree(entry.folder, ignore_errors=True)
        self._snapshots.pop(app, None)

    def close(self) -> None:
        self._entries.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def _publish(self, app: str) -> None:
        self.store.dispatch(a.HistoryChanged(app=app, builds=self.builds(app)))


def build_outputs(built: BuiltApp) -> frozenset[str]:
    """The app-relative paths its build commands write (each built component's wasm)."""
    root = built.spec.root
    outputs = set()
    for component in built.spec.components.values():
        if component.build is not None and component.source is not None:
            with contextlib.suppress(ValueError):
                outputs.add(Path(component.source).relative_to(root).as_posix())
    return frozenset(outputs)


def freeze_build(built: BuiltApp, folder: Path, granted: list[Path] | None = None) -> BuiltApp:
    """``built`` as a kept build: its wasm and its granted files copied into ``folder`` (the
    build output is overwritten by the next build, the files by the next edit). Raises OSError
    when a copy fails, so a build is never kept pointing at live files. Its trigger time goes:
    serving it again later is not the edit that made it. ``granted``: its ``granted_paths``, if
    the caller has them."""
    frozen = freeze_files(freeze_wasm(built, folder), folder / "files", paths=granted)
    return dataclasses.replace(frozen, trigger_time=None)
