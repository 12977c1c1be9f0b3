"""Copies of a build that later builds cannot change: its wasm, and for a kept build its granted files.

Build tools overwrite their output (often in place, same inode) and a developer edits the files
an app grants its guest, so whatever must serve a build again later (the history's kept builds,
the serving processes and their replacements) serves from copies made here. One routine for the
history (engine) and the local target, so both freeze the same way.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from types import MappingProxyType

from devenv.model import AppSpec, BuiltApp

__all__ = ["FILES_MAX_BYTES", "freeze_files", "freeze_wasm", "granted_paths"]

# Granted files a kept build copies at most: a site's static assets fit; a folder of videos or a
# dataset would cost that much disk per build, so such a build keeps none (and says so).
FILES_MAX_BYTES = 64 * 1024 * 1024


def freeze_wasm(built: BuiltApp, folder: Path) -> BuiltApp:
    """``built`` with every component's wasm copied into ``folder``. A component whose wasm does
    not exist keeps its path (the deploy names the missing file). Any other failure to copy (a
    full disk, a read-only folder) raises OSError: a copy that silently kept the live path would
    let a later build's bytes serve under this build's digest."""
    folder.mkdir(parents=True, exist_ok=True)
    frozen: dict[str, Path] = {}
    for component_id, component in built.spec.components.items():
        source = built.wasm.get(component_id) or component.source
        if source is None:
            continue  # fetched from a URL: the spec keeps its digest
        copy = folder / f"{component_id}.wasm"
        try:
            shutil.copyfile(source, copy)
        except FileNotFoundError:
            if Path(source).exists():
                raise  # the source is there: it is the copy that failed
            continue
        frozen[component_id] = copy
    return dataclasses.replace(built, wasm=MappingProxyType({**built.wasm, **frozen}))


def granted_paths(spec: AppSpec) -> list[Path]:
    """Every file any component of ``spec`` is granted (``files`` globs and mounted folders),
    relative to the app root; paths whose real location leaves the app folder are left out (the
    deploy refuses such a grant, naming it)."""
    root = spec.root
    real_root = root.resolve()
    found: dict[Path, None] = {}
    for component in spec.components.values():
        for mount in component.files:
            if mount.destination is None:
                candidates = [p for p in root.glob(mount.source) if p.is_file()]
            else:
                folder = root / mount.source
                candidates = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
            for path in candidates:
                real = path.resolve()
                if real_root in real.parents:
                    found[path.relative_to(root)] = None
    return list(found)


def freeze_files(
    built: BuiltApp, folder: Path, max_bytes: int = FILES_MAX_BYTES, paths: list[Path] | None = None
) -> BuiltApp:
    """``built`` with its granted files copied under ``folder`` (same layout as the app folder)
    and ``files_root`` pointing there, so serving it again later shows the files as they were.
    Unchanged (``files_root`` stays None: today's files serve) when it grants none, or more than
    ``max_bytes`` in all. A failed copy raises OSError, as freeze_wasm's does. ``paths``: the
    spec's ``granted_paths`` when the caller has them already."""
    root = built.spec.root
    paths = granted_paths(built.spec) if paths is None else paths
    if not paths or sum(_size(root / p) for p in paths) > max_bytes:
        return built
    for component in built.spec.components.values():
        for mount in component.files:
            if mount.destination is not None and (root / mount.source).is_dir():
                (folder / mount.source).mkdir(parents=True, exist_ok=True)  # mounted even if empty
    for relative in paths:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(root / relative, target)
        except FileNotFoundError:
            if (root / relative).exists():
                raise
            # Deleted since the glob: the kept build does without it, as a deploy now would.
    return dataclasses.replace(built, files_root=folder)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
