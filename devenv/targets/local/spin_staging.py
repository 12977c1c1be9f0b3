"""Which manifest ``spin up`` reads for a build: the app's own, or a staged copy for a kept build.

``spin up`` loads each component from its manifest's ``source``, which is the latest build's
output. A build the history kept (a rollback) has its components frozen elsewhere
(``BuiltApp.wasm``), so its manifest is staged: a folder per deploy holding a ``spin.toml``
whose component sources are those frozen files (absolute paths, which Spin accepts), next to a
symlink to every other entry of the app's folder. Spin resolves every other relative path
(``files`` globs, the ``.spin`` state folder with the default key-value store and SQLite
database) against the manifest's folder, so through the links they reach the app's own files,
and a rolled-back build keeps the app's data. A kept build's own copy of its granted files
(``BuiltApp.files_root``) is linked in their place, so Spin serves the files as they were. Nothing is written into the app's folder but a
``.spin`` folder Spin would make anyway (the watcher would see anything else).
"""

from __future__ import annotations

import json
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from devenv.errors import DeployError
from devenv.model import BuiltApp
from devenv.session_dirs import new_session_folder

STATE_DIR = ".spin"  # Spin's default state folder, relative to the manifest


@dataclass(frozen=True)
class SpinManifest:
    """The manifest ``spin up --from`` reads, and the staged folder to delete after (if any)."""

    path: Path
    staged: Path | None = None

    def cleanup(self) -> None:
        if self.staged is not None:
            shutil.rmtree(self.staged, ignore_errors=True)


def frozen_sources(built: BuiltApp) -> dict[str, Path]:
    """The components whose wasm to serve is not the file their manifest ``source`` names."""
    moved: dict[str, Path] = {}
    for component_id, wasm in built.wasm.items():
        component = built.spec.components.get(component_id)
        source = component.source if component is not None else None
        if source is not None and Path(wasm).resolve() != Path(source).resolve():
            moved[component_id] = Path(wasm).resolve()
    return moved


def manifest_for(built: BuiltApp) -> SpinManifest:
    """The app's own manifest when every component's wasm is its ``source``; else a staged copy
    (blocking: call it in a thread). DeployError when the manifest cannot be read or staged."""
    manifest = Path(built.spec.manifest_path)
    moved = frozen_sources(built)
    if not moved and built.files_root is None:
        return SpinManifest(manifest)
    try:
        doc = tomllib.loads(manifest.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise DeployError(
            what=f"app {built.spec.name}: cannot read its manifest to serve a kept build: {err}",
            where=str(manifest),
            fix="restore the app's spin.toml, or deploy the current build",
        ) from None
    _point_sources(doc, moved)
    folder = new_session_folder(None, "wasmdev-spin", built.spec.name)
    try:
        root = manifest.parent
        (root / STATE_DIR).mkdir(exist_ok=True)  # linked, so the kept build shares the app's data
        kept = {e.name: e for e in built.files_root.iterdir()} if built.files_root is not None else {}
        for entry in root.iterdir():
            if entry.name != manifest.name:
                (folder / entry.name).symlink_to(kept.pop(entry.name, entry))
        for name, entry in kept.items():  # granted then, deleted from the app folder since
            (folder / name).symlink_to(entry)
        staged = folder / manifest.name
        staged.write_text(dumps_toml(doc))
    except OSError as err:
        shutil.rmtree(folder, ignore_errors=True)
        raise DeployError(
            what=f"app {built.spec.name}: cannot stage its manifest for a kept build: {err.strerror or err}",
            where=str(folder),
            fix="check the free space and permissions of the temp folder",
        ) from None
    return SpinManifest(staged, staged=folder)


def _point_sources(doc: dict[str, object], moved: dict[str, Path]) -> None:
    components = doc.get("component")
    if isinstance(components, dict):  # manifest version 2: [component.ID]
        entries = [(cid, c) for cid, c in components.items() if isinstance(c, dict)]
    elif isinstance(components, list):  # version 1: [[component]] with an id
        entries = [(str(c.get("id", "")), c) for c in components if isinstance(c, dict)]
    else:
        entries = []
    for component_id, table in entries:
        if component_id in moved and isinstance(table.get("source"), str):
            table["source"] = str(moved[component_id])


def dumps_toml(doc: dict[str, object]) -> str:
    """``doc`` as TOML, one ``key = value`` line per top-level key (tables written inline):
    enough for a manifest read back by a TOML parser, without a TOML writer dependency."""
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in doc.items())


def _key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
