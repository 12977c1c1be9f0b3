"""spin.toml → AppSpec, reading what Spin itself reads.

Spin's manifest crate is the reference (spinframework/spin, crates/manifest and crates/loader):
the top-level shape, `[application]`, variables and components deny unknown fields; trigger
tables carry trigger-specific settings, which for `http` are `route`, `executor` and
`static_response` (crates/http). Version 1 manifests are converted by ``manifest_v1`` to the
same intermediate form first, as Spin's own compat layer does.

    manifest.py        public API: load_app, guess_app_name; version detection
    manifest_v2.py     version-2 shape, trigger ids, inline components → intermediate form
    manifest_v1.py     version-1 shape → the same intermediate form
    manifest_build.py  intermediate form → AppSpec (sources, files, hosts, builds, routes)
    manifest_rules.py  value rules: ids, outbound hosts, templates, allowed_http_hosts
    manifest_reader.py typed TOML access whose errors name the file and key

Every problem is a ManifestError naming the file and the TOML key path; no other exception
escapes ``load_app`` for any input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devenv.errors import ManifestError
from devenv.manifest_build import build_app
from devenv.manifest_reader import TomlReader
from devenv.manifest_v1 import read_v1
from devenv.manifest_v2 import read_v2
from devenv.model import AppSpec

MANIFEST_NAME = "spin.toml"
V2_FIX = 'set `spin_manifest_version = 2` (or `spin_manifest_version = "1"` for the legacy format)'


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def load_app(manifest_path: Path) -> AppSpec:
    """Read a spin.toml (version 2, or version 1 converted) into an AppSpec.

    A directory is read as its spin.toml, as `spin up -f DIR` does. Raises ManifestError.
    """
    path = Path(manifest_path).absolute()
    if path.is_dir():
        path = path / MANIFEST_NAME
    reader = TomlReader(path)
    doc = reader.load()
    version = detect_version(reader, doc)
    if version == 1:
        raw = read_v1(reader, doc)
    else:
        raw = read_v2(reader, doc)
    return build_app(reader, raw)


def guess_app_name(manifest_path: Path) -> str:
    """The app's name for lists and errors, even when its manifest cannot be read.

    The `[application] name` (or a v1 top-level `name`) when the file parses, else the name of
    the folder holding the manifest.
    """
    path = Path(manifest_path).absolute()
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        doc = TomlReader(path).load()
    except ManifestError:  # unreadable or not TOML: fall back to the folder name
        doc = {}
    application = doc.get("application")
    name = application.get("name") if isinstance(application, dict) else doc.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    return path.parent.name or "app"


def detect_version(reader: TomlReader, doc: dict[str, Any]) -> int:
    """1 or 2, as Spin's ManifestVersion::detect; `spin_version` is the old spelling."""
    if "spin_manifest_version" in doc and "spin_version" in doc:
        reader.fail(
            "spin_version", "duplicate field `spin_manifest_version`", "keep only `spin_manifest_version`"
        )
    key = "spin_version" if "spin_version" in doc else "spin_manifest_version"
    if key not in doc:
        reader.fail("", "missing field `spin_manifest_version`", f"{V2_FIX} at the top of the file")
    value = doc[key]
    if value == "1":
        return 1
    if isinstance(value, int) and not isinstance(value, bool) and value == 2:
        return 2
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    reader.fail(key, f"invalid manifest version: {shown}", V2_FIX)
