"""The files a guest may see: exactly the ``files`` its manifest grants, read-only, as Spin does.

- A glob entry ("static/**/*.css", "config.json") grants each matching file at its path relative
  to the app root, under "/". WASI can only preopen directories, so matches are copied into a
  staging directory (one per component and build) that is preopened at "/"; like ``spin up``,
  the guest sees the files as they were when the build was deployed.
- A ``{ source = "dir", destination = "/where" }`` entry preopens that directory at that guest path.
Nothing else of the host is reachable: no inherited preopens, no absolute host paths.
"""

from __future__ import annotations

import fnmatch
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from devenv.errors import DeployError
from devenv.model import AppSpec, ComponentSpec


@dataclass(frozen=True)
class Preopen:
    host_dir: str
    guest_dir: str


def _where(app: AppSpec, component: ComponentSpec) -> str:
    return f"{app.manifest_path} [component.{component.id}.files]"


def _checked_relative(app: AppSpec, component: ComponentSpec, pattern: str) -> None:
    p = PurePosixPath(pattern)
    if p.is_absolute() or ".." in p.parts:
        raise DeployError(
            what=f"file grant {pattern!r} reaches outside the app directory",
            where=_where(app, component),
            fix="use a path or glob relative to the folder that holds spin.toml",
        )


def _inside_app(app: AppSpec, component: ComponentSpec, path: Path, root: Path, real_root: Path) -> Path:
    """``path`` with symlinks resolved, refused if that leaves the app directory: the pattern
    check alone would let a symlink in the app ("public/x -> /etc/passwd") grant any host file."""
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise DeployError(
            what=f"file grant {path.relative_to(root).as_posix()!r} is a symlink to {real}, "
            "outside the app directory",
            where=_where(app, component),
            fix="copy what the guest needs into the app directory, or remove the symlink",
        )
    return real


def prepare_preopens(
    app: AppSpec, component: ComponentSpec, staging: Path, files_root: Path | None = None
) -> list[Preopen]:
    """Resolve the component's grants; copy glob matches into ``staging`` (created if needed).
    ``files_root``: a kept build's copy of the granted files (frozen_builds.py), read instead of
    the app folder."""
    preopens: list[Preopen] = []
    globbed: list[Path] = []
    root = files_root or app.root
    real_root = root.resolve()
    for mount in component.files:
        _checked_relative(app, component, mount.source)
        if mount.destination is None:
            globbed.extend(p for p in root.glob(mount.source) if p.is_file())
            continue
        source = root / mount.source
        if not source.is_dir():
            raise DeployError(
                what=f"file grant source {mount.source!r} is not a directory",
                where=_where(app, component),
                fix=f"create {source} or fix `source` (a directory mounted at {mount.destination!r})",
            )
        guest = mount.destination if mount.destination.startswith("/") else "/" + mount.destination
        preopens.append(Preopen(str(_inside_app(app, component, source, root, real_root)), guest))
    excluded = {
        p
        for p in globbed
        if any(fnmatch.fnmatch(p.relative_to(root).as_posix(), x) for x in component.exclude_files)
    }
    chosen = [p for p in globbed if p not in excluded]
    if chosen:
        if staging.exists():
            shutil.rmtree(staging)
        for path in chosen:
            real = _inside_app(app, component, path, root, real_root)
            target = staging / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(real, target)
        # "/" first so that it is the guest's first preopen (fd 3), as in Spin's layout.
        preopens.insert(0, Preopen(str(staging), "/"))
    return preopens
