"""``wasmdev build``: every app (or one) built once, no watching, no target."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from devenv.app_names import app_names
from devenv.engine.builder import Builder
from devenv.engine.system_log import one_line, say
from devenv.errors import BuildError, ManifestError, WasmdevError
from devenv.manifest import guess_app_name, load_app
from devenv.store import actions as a
from devenv.store.store import Store

if TYPE_CHECKING:
    from devenv.config import Workspace


async def build_once(store: Store, workspace: Workspace, app: str | None = None) -> int:
    """``wasmdev build``: build each app (or the one named) once; the number of failures.

    Every outcome is also a SYSTEM log line, so the headless printer tells the whole story."""
    builder = Builder(store, timeout_s=float(workspace.settings.build_timeout_s))
    failures = 0
    matched = False
    declared = {Path(m): guess_app_name(Path(m)) for m in workspace.manifests}
    names = app_names(declared, workspace.root)  # shared names: each app named after its folder
    for manifest in map(Path, workspace.manifests):
        try:
            spec = load_app(manifest)
        except ManifestError as err:
            guessed = names[manifest]
            if app is None or guessed == app:
                matched = True
                failures += 1
                store.dispatch(a.ManifestFailed(guessed, manifest, str(err)))
                say(store, guessed, f"manifest error: {one_line(str(err))}", "error")
            continue
        if names[manifest] != spec.name:
            say(
                store,
                names[manifest],
                f"app name `{spec.name}` is shared: {manifest} builds as `{names[manifest]}`",
                "warn",
            )
            spec = dataclasses.replace(spec, name=names[manifest])
        if app is not None and spec.name != app:
            continue
        matched = True
        store.dispatch(a.AppLoaded(spec=spec))
        started = time.monotonic()
        try:
            built = await builder.build(spec)
        except BuildError as err:
            failures += 1
            say(store, spec.name, f"build failed: {one_line(str(err))}", "error")
        else:
            took_ms = (time.monotonic() - started) * 1000
            say(store, spec.name, f"built {built.short_digest} in {took_ms:.0f} ms")
    if app is not None and not matched:
        listed = ", ".join(sorted(names.values())) or "none"
        raise WasmdevError(
            what=f"no app named `{app}` in the workspace",
            where=str(workspace.root),
            fix=f"pick one of: {listed}",
        )
    return failures

