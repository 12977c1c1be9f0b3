"""An installed ``spin`` as a local runtime: finding it, its version, and which runtime serves an app.

The embedded host (wasmtime-py) serves WAGI modules and wasi:http 0.2 components; it has no
component-model async, so WASI 0.3 components (every Spin 4 HTTP app) need a real Spin. With
``[local] runtime = "auto"`` (the default) wasmdev serves an app embedded when it can and under an
installed Spin ≥ 3 otherwise; ``"spin"`` serves every app under Spin, ``"embedded"`` none.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from devenv.component_world import ComponentWorld, NotWasm, WorldKind, read_world, spin_serves
from devenv.errors import DeployError
from devenv.model import BuiltApp, NodeRuntime
from devenv.targets.cluster.node_image import newest_shim_for

MIN_SPIN = (3, 0)
INSTALL_SPIN = (
    "https://spinframework.dev/install (or: curl -fsSL https://spinframework.dev/downloads/install.sh | bash)"
)
# `spin --version` is clap's version line: the binary name, then "<version> (<sha> <date>)"
# (spin src/lib.rs, build_info()).
_VERSION = re.compile(r"^spin (\d+)\.(\d+)\.(\d+)(\S*)", re.MULTILINE)


class RuntimeSetting(StrEnum):
    AUTO = "auto"
    EMBEDDED = "embedded"
    SPIN = "spin"


class RuntimeChoice(StrEnum):
    EMBEDDED = "embedded"
    SPIN = "spin"


@dataclass(frozen=True)
class SpinCli:
    path: str
    version: str  # "4.1.0"

    @property
    def spin_version(self) -> tuple[int, int]:
        major, minor, *_ = (int(p) for p in self.version.split("-")[0].split("."))
        return major, minor

    def runtime(self) -> NodeRuntime:
        return NodeRuntime(image="", shim=None, spin=self.version)


def parse_spin_version(text: str) -> str | None:
    found = _VERSION.search(text)
    return ".".join(found.group(1, 2, 3)) + found.group(4) if found else None


def find_spin(path: str | None = None, timeout_s: float = 10.0) -> SpinCli | None:
    """The ``spin`` on ``path`` (default: PATH) and its version; None if absent or unreadable.

    Blocking (runs ``spin --version``); call it in a thread from async code."""
    exe = shutil.which("spin", path=path)
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = parse_spin_version(done.stdout) if done.returncode == 0 else None
    return SpinCli(path=exe, version=version) if version else None


def embedded_serves(world: ComponentWorld) -> bool:
    """Whether the embedded wasmtime host can serve a binary of this world (no WASI 0.3: it has no
    component-model async). The host's own list of Spin interfaces is the local target's to add."""
    return not world.is_wasi_0_3


def app_worlds(built: BuiltApp) -> Mapping[str, ComponentWorld]:
    worlds = {}
    for component, path in built.wasm.items():
        try:
            worlds[component] = read_world(Path(path))
        except (OSError, NotWasm):
            continue  # the build's own checks report a file that is not wasm
    return worlds


def choose_runtime(
    built: BuiltApp,
    setting: RuntimeSetting | str,
    spin: SpinCli | None,
    *,
    needs_spin: Callable[[Mapping[str, ComponentWorld]], bool] | None = None,
) -> RuntimeChoice:
    """Which runtime serves ``built``, or a DeployError that says why none can and both fixes.

    Reads only the components' import/export names (milliseconds, each component parsed once),
    so it can run before the embedded host's compile, which takes minutes for an 18 MB
    component. ``needs_spin`` (the local target's list of host interfaces, kept out of this
    module's imports) says whether worlds the embedded host could load import what it never
    serves: with ``"auto"`` and a usable Spin, such an app goes to Spin too."""
    setting = RuntimeSetting(setting)
    worlds = app_worlds(built)
    blocked = {c: w for c, w in worlds.items() if not embedded_serves(w)}
    if setting is RuntimeSetting.EMBEDDED:
        if blocked:
            raise _refusal(built, blocked, '[local] runtime = "embedded" is set', spin, embedded_only=True)
        return RuntimeChoice.EMBEDDED
    spin_usable = spin is not None and spin.spin_version >= MIN_SPIN
    if setting is RuntimeSetting.AUTO and not blocked:
        if not (spin_usable and needs_spin is not None and needs_spin(worlds)):
            return RuntimeChoice.EMBEDDED
    if spin is None or spin.spin_version < MIN_SPIN:
        reason = "no `spin` is on PATH" if spin is None else f"the `spin` on PATH is {spin.version} (< 3)"
        if setting is RuntimeSetting.SPIN and not blocked:
            raise DeployError(
                what=f'app {built.spec.name}: [local] runtime = "spin" is set but {reason}',
                where=str(built.spec.manifest_path),
                fix=f'install Spin ≥ 3: {INSTALL_SPIN}; or set [local] runtime = "auto" in wasmdev.toml',
            )
        raise _refusal(built, blocked, reason, spin)
    too_new = {c: w for c, w in worlds.items() if not spin_serves(w, spin.spin_version)}
    if too_new:
        component, world = next(iter(too_new.items()))
        need = world.min_spin or (0, 0)
        raise DeployError(
            what=f"app {built.spec.name}: component {component} needs Spin {need[0]}.{need[1]} or later "
            f"(it exports {world.http_export or 'WASI 0.3 interfaces'}); the spin at {spin.path} is {spin.version}",
            where=str(built.wasm[component]),
            fix=f"upgrade Spin: {INSTALL_SPIN}",
        )
    return RuntimeChoice.SPIN


def _refusal(
    built: BuiltApp,
    blocked: Mapping[str, ComponentWorld],
    reason: str,
    spin: SpinCli | None,
    *,
    embedded_only: bool = False,
) -> DeployError:
    component, world = next(iter(blocked.items()))
    need = world.min_spin or (4, 0)
    kind = "a WASI 0.3 (Spin 4) component" if world.kind is not WorldKind.OTHER_COMPONENT else "a component"
    fixes = []
    if embedded_only:
        fixes.append('set [local] runtime = "auto" in wasmdev.toml')
    if spin is None or spin.spin_version < need:
        fixes.append(
            f"install Spin ≥ {need[0]}.{need[1]} ({INSTALL_SPIN}) so wasmdev runs it under `spin up`"
        )
    shim = newest_shim_for(need)
    if shim is not None:
        fixes.append(
            f"or run it on the cluster with a Spin {need[0]} node: `wasmdev cluster image --shim {shim}`, "
            "then `wasmdev up --target k3d`"
        )
    return DeployError(
        what=f"app {built.spec.name}: component {component} is {kind} "
        f"(exports {world.http_export or 'no wasi:http handler'}), which wasmdev's embedded runtime "
        f"cannot serve, and {reason}",
        where=str(built.wasm[component]),
        fix="; ".join(fixes),
    )
