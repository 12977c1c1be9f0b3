"""``wasmdev build``: every app (or one) built once, no watching, no target."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from devenv.engine.builder import Builder
from devenv.errors import BuildError, ManifestError, WasmdevError
from devenv.manifest import guess_app_name, load_app
from devenv.store import actions as a
from devenv.store.store import Store

if TYPE_CHECKING:
    from devenv.config import Workspace


async def build_once(store: Store, workspace: Workspace, app: str | None = None) -> int:
    """``wasmdev build``: build each app (or the one named) once; the number of failures."""
    builder = Builder(store, timeout_s=float(workspace.settings.build_timeout_s))
    failures = 0
    matched = False
    for manifest in workspace.manifests:
        try:
            spec = load_app(Path(manifest))
        except ManifestError as err:
            if app is None or guess_app_name(Path(manifest)) == app:
                matched = True
                failures += 1
                store.dispatch(a.ManifestFailed(guess_app_name(Path(manifest)), Path(manifest), str(err)))
            continue
        if app is not None and spec.name != app:
            continue
        matched = True
        store.dispatch(a.AppLoaded(spec=spec))
        try:
            await builder.build(spec)
        except BuildError:
            failures += 1
    if app is not None and not matched:
        names = ", ".join(sorted(guess_app_name(Path(m)) for m in workspace.manifests)) or "none"
        raise WasmdevError(
            what=f"no app named `{app}` in the workspace",
            where=str(workspace.root),
            fix=f"pick one of: {names}",
        )
    return failures
