"""The workspace: which apps wasmdev runs (listed in wasmdev.toml or discovered) and its settings.

wasmdev.toml, at the workspace root, is optional::

    target = "local"                      # local | k3d | kube
    manifests = ["apps/a/spin.toml", "services/*"]   # files, folders or globs (relative to this file)
    watch_debounce_ms = 50
    build_timeout_s = 600

    [local]    host, base_port, request_timeout_s, memory_limit_mb, probe_interval_s, cache_dir,
               guest_processes, keep_builds, record_body_bytes, runtime, runtime_config
    [cluster]  name, image, shim, k3s, agents, http_port, api_port, registry_name, registry_port,
               runtime_class, namespace, kubeconfig
    [kube]     context, kubeconfig, registry ("HOST[:PORT]/REPO"), namespace, runtime_class,
               insecure_registry
    [apps.NAME] port, runtime_class, replicas, cpu_request, memory_request, cpu_limit,
               memory_limit, enabled

`apps` may instead be an array of globs (`apps = ["apps/*"]`), a synonym for `manifests`; per-app
tables then need `manifests` for the list. Without wasmdev.toml every spin.toml under the root is
an app, skipping VCS, dependency, virtualenv and build-output folders.

Unknown keys and wrong types are ManifestErrors naming the file, the key, what was expected and
the fix (with the closest valid key for a typo).
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

from devenv.errors import ManifestError, WasmdevError
from devenv.manifest import MANIFEST_NAME
from devenv.manifest_reader import TomlReader, closest, describe, key_join

CONFIG_NAME = "wasmdev.toml"
TARGETS = ("local", "k3d", "kube")

# Folders never searched for apps: VCS data, dependencies, virtualenvs, build outputs, caches.
SKIP_DIRS = frozenset(
    {".git", "node_modules", "target", ".venv", "venv", "__pycache__", "dist", "build", ".spin", ".wasmdev"}
)


def _xdg_dir(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable)
    return Path(value) if value and Path(value).is_absolute() else Path.home() / fallback


def default_cache_dir() -> Path:
    return _xdg_dir("XDG_CACHE_HOME", ".cache") / "wasmdev"


def default_kubeconfig(cluster_name: str) -> Path:
    return _xdg_dir("XDG_CONFIG_HOME", ".config") / "wasmdev" / f"kubeconfig-{cluster_name}.yaml"


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


def default_guest_processes() -> int:
    """Two on a machine with two cores or more (one per core on the 2-core machines this is
    measured on; more only add memory), none on one core, where processes cannot run in parallel."""
    return 2 if (os.cpu_count() or 1) >= 2 else 0


@dataclass(frozen=True)
class LocalSettings:
    host: str = "127.0.0.1"
    base_port: int = 3000
    request_timeout_s: float = 30.0
    memory_limit_mb: int = 128
    probe_interval_s: float = 0.0  # 0 = no latency probes
    cache_dir: Path = field(default_factory=default_cache_dir)
    # WAGI guests run in this many worker processes, outside wasmdev's GIL; 0 runs them on
    # threads of wasmdev's own process (see devenv/targets/local/guest_procs.py).
    guest_processes: int = field(default_factory=default_guest_processes)
    # Builds of each app kept for rollback: their compiled code in memory and on disk; older
    # ones are pruned (bounded by bytes as well, see devenv/targets/local/compile_cache.py).
    keep_builds: int = 10
    # When request recording is on, each recorded request/response body is cut at this size.
    record_body_bytes: int = 1024 * 1024
    # Which host serves apps: the embedded wasmtime host, an installed `spin` (≥ 3), or "auto":
    # embedded where it can, Spin for what it cannot (WASI 0.3 worlds); see spin_runtime.py.
    runtime: str = "auto"
    # Spin's runtime-config.toml (`spin up --runtime-config-file`): where key-value stores and
    # SQLite databases other than `default` live (devenv/runtime_config.py). Relative to the
    # workspace root.
    runtime_config: Path | None = None
    record_requests: int = 50  # real requests per app kept, with their responses, for replay


@dataclass(frozen=True)
class ClusterSettings:
    name: str = "wasmdev"
    # "" builds the node image from rancher/k3s:<k3s> + the shim of <shim> (`wasmdev cluster
    # image`); a name uses that image as is, e.g. the published
    # ghcr.io/spinframework/containerd-shim-spin/k3d:v0.24.0 (Spin 3.6.3).
    image: str = ""
    shim: str = ""  # "" = the newest shim release wasmdev knows (node_image.DEFAULT_SHIM)
    k3s: str = ""  # "" = the k3s tag chosen for that release (node_image.DEFAULT_K3S)
    agents: int = 0
    http_port: int = 8081
    api_port: int | None = None
    registry_name: str = "wasmdev-registry"
    registry_port: int = 5001
    runtime_class: str = "wasmtime-spin-v2"
    namespace: str = "default"
    # Defaults to ~/.config/wasmdev/kubeconfig-<name>.yaml, so each cluster keeps its own file
    # and the user's ~/.kube/config is never touched.
    kubeconfig: Path = None  # type: ignore[assignment]  # filled in by __post_init__

    def __post_init__(self) -> None:
        if self.kubeconfig is None:
            object.__setattr__(self, "kubeconfig", default_kubeconfig(self.name))


@dataclass(frozen=True)
class KubeSettings:
    context: str | None = None
    kubeconfig: Path | None = None
    registry: str | None = None  # "HOST[:PORT]/REPO"
    namespace: str = "default"
    runtime_class: str = "wasmtime-spin-v2"
    insecure_registry: bool = False


@dataclass(frozen=True)
class AppSettings:
    port: int | None = None
    runtime_class: str | None = None
    replicas: int = 1
    cpu_request: str = "100m"
    memory_request: str = "64Mi"
    cpu_limit: str = "500m"
    memory_limit: str = "128Mi"
    enabled: bool = True
    replay: bool = False  # replay the recorded requests after every successful deploy
    replay_all_methods: bool = False  # that replay re-sends POST/PUT/DELETE/PATCH too (real side effects)


_DEFAULT_APP = AppSettings()


@dataclass(frozen=True)
class Settings:
    root: Path
    config_path: Path | None = None
    target: str = "local"  # local | k3d | kube
    local: LocalSettings = field(default_factory=LocalSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    kube: KubeSettings = field(default_factory=KubeSettings)
    apps: Mapping[str, AppSettings] = field(default_factory=lambda: MappingProxyType({}))
    manifests: tuple[Path, ...] = ()  # listed in wasmdev.toml, absolute
    watch_debounce_ms: int = 50
    build_timeout_s: float = 600.0

    def app(self, name: str) -> AppSettings:
        """That app's `[apps.NAME]` settings, or the defaults."""
        return self.apps.get(name, _DEFAULT_APP)

    def with_overrides(self, **changes: object) -> Settings:
        """These settings with CLI flags applied: `target=`, `watch_debounce_ms=`,
        `build_timeout_s=`, or `<section>_<field>=` for local/cluster/kube (`local_base_port=`,
        `kube_context=`, `kube_registry=`, `cluster_image=`, …). None means "flag not given".

        A bad value raises WasmdevError naming the flag; an unknown name is a programming error
        (TypeError)."""
        top: dict[str, Any] = {}
        sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        for name, value in changes.items():
            if value is None:
                continue
            section, _, key = name.partition("_")
            if name in _TOP_FIELDS:
                top[name] = _TOP_FIELDS[name](value, _flag_failer(name))
            elif section in _SECTIONS and key in _SECTIONS[section][1]:
                sections[section][key] = _SECTIONS[section][1][key](value, _flag_failer(name))
            else:
                options = [*_TOP_FIELDS, *(f"{s}_{k}" for s, (_, kinds) in _SECTIONS.items() for k in kinds)]
                near = closest(name, options)
                raise TypeError(
                    f"unknown settings override {name!r}" + (f"; did you mean {near!r}?" if near else "")
                )
        cluster_changes = sections["cluster"]
        if "name" in cluster_changes and "kubeconfig" not in cluster_changes:
            # A renamed cluster gets its own kubeconfig unless one was chosen explicitly.
            if self.cluster.kubeconfig == default_kubeconfig(self.cluster.name):
                cluster_changes["kubeconfig"] = default_kubeconfig(cluster_changes["name"])
        return dataclasses.replace(
            self,
            **top,
            local=dataclasses.replace(self.local, **sections["local"]),
            cluster=dataclasses.replace(self.cluster, **cluster_changes),
            kube=dataclasses.replace(self.kube, **sections["kube"]),
        )


@dataclass(frozen=True)
class Workspace:
    root: Path
    settings: Settings
    manifests: tuple[Path, ...]  # listed or discovered, sorted


# ---------------------------------------------------------------------------------------------
# Value checks, shared by wasmdev.toml and CLI flags. Each takes the value and a `fail(what, fix)`
# that raises the right error for where the value came from.
# ---------------------------------------------------------------------------------------------

Fail = Callable[[str, str], NoReturn]
Check = Callable[[object, Fail], Any]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CPU = re.compile(r"^\d+(\.\d+)?m?$")
_MEMORY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_REGISTRY = re.compile(r"^(?P<host>[A-Za-z0-9.-]+)(:(?P<port>\d{1,5}))?/(?P<repo>[a-z0-9._/-]+)$")


def _flag_failer(name: str) -> Fail:
    flag = "--" + name.replace("_", "-")

    def fail(what: str, fix: str) -> NoReturn:
        raise WasmdevError(what=what, where=flag, fix=fix)

    return fail


def _string(value: object, fail: Fail) -> str:
    if not isinstance(value, str) or not value.strip():
        fail(f"expected a non-empty string, found {describe(value)}", 'give a value in quotes, e.g. "name"')
    return value


def _integer(minimum: int, maximum: int | None = None) -> Check:
    def check(value: object, fail: Fail) -> int:
        span = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        if isinstance(value, bool) or not isinstance(value, int):
            fail(f"expected an integer, found {describe(value)}", f"use a whole number {span}")
        if value < minimum or (maximum is not None and value > maximum):
            fail(f"{value} is out of range", f"use a whole number {span}")
        return value

    return check


def _number(minimum: float, allow_minimum: bool = True) -> Check:
    def check(value: object, fail: Fail) -> float:
        bound = f"of at least {minimum}" if allow_minimum else f"greater than {minimum}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail(f"expected a number, found {describe(value)}", f"use a number {bound}")
        if not math.isfinite(value) or value < minimum or (value == minimum and not allow_minimum):
            fail(f"{value} is out of range", f"use a number {bound}")
        return float(value)

    return check


def _boolean(value: object, fail: Fail) -> bool:
    if not isinstance(value, bool):
        fail(f"expected true or false, found {describe(value)}", "use true or false (no quotes)")
    return value


def _path(value: object, fail: Fail) -> Path:
    if isinstance(value, Path):
        return value
    return Path(_string(value, fail)).expanduser()


def _pattern(regex: re.Pattern[str], expected: str, example: str) -> Check:
    def check(value: object, fail: Fail) -> str:
        text = _string(value, fail)
        if not regex.match(text):
            fail(f'"{text}" is not {expected}', f'use {expected}, e.g. "{example}"')
        return text

    return check


def _choice(options: Sequence[str]) -> Check:
    def check(value: object, fail: Fail) -> str:
        text = _string(value, fail)
        if text not in options:
            near = closest(text, options)
            listed = ", ".join(f'"{o}"' for o in options)
            fail(
                f'"{text}" is not one of {listed}',
                f'did you mean "{near}"?' if near else f"use one of {listed}",
            )
        return text

    return check


def _registry(value: object, fail: Fail) -> str:
    text = _string(value, fail)
    found = _REGISTRY.match(text)
    if "://" in text or not found or (found.group("port") and not 0 < int(found.group("port")) < 65536):
        fail(
            f'"{text}" is not a registry reference of the form HOST[:PORT]/REPO',
            'write it without a scheme, e.g. "localhost:5001/wasmdev" or "ghcr.io/me/apps"',
        )
    return text


_port = _integer(1, 65535)
_k8s_name = _pattern(_DNS_LABEL, "a lowercase DNS label (letters, digits, '-')", "wasmdev")


def _registry_name(value: object, fail: Fail) -> str:
    # "" means "no registry": the k3d target then ships builds with `k3d image import`.
    if value == "":
        return ""
    return _k8s_name(value, fail)


_TOP_FIELDS: dict[str, Check] = {
    "target": _choice(TARGETS),
    "watch_debounce_ms": _integer(0, 60_000),
    "build_timeout_s": _number(0, allow_minimum=False),
}
_LOCAL_FIELDS: dict[str, Check] = {
    "host": _string,
    "base_port": _port,
    "request_timeout_s": _number(0, allow_minimum=False),
    "memory_limit_mb": _integer(1, 4096),
    "probe_interval_s": _number(0),
    "cache_dir": _path,
    "guest_processes": _integer(0, 32),
    "keep_builds": _integer(1, 100),
    "record_body_bytes": _integer(0, 1024 * 1024 * 1024),
    "runtime": _choice(("auto", "embedded", "spin")),
    "runtime_config": _path,
    "record_requests": _integer(1, 10_000),
}
_CLUSTER_FIELDS: dict[str, Check] = {
    "name": _k8s_name,
    "image": _string,
    "shim": _string,
    "k3s": _string,
    "agents": _integer(0, 16),
    "http_port": _port,
    "api_port": _port,
    "registry_name": _registry_name,
    "registry_port": _port,
    "runtime_class": _k8s_name,
    "namespace": _k8s_name,
    "kubeconfig": _path,
}
_KUBE_FIELDS: dict[str, Check] = {
    "context": _string,
    "kubeconfig": _path,
    "registry": _registry,
    "namespace": _k8s_name,
    "runtime_class": _k8s_name,
    "insecure_registry": _boolean,
}
_APP_FIELDS: dict[str, Check] = {
    "port": _port,
    "runtime_class": _k8s_name,
    "replicas": _integer(0, 100),
    "cpu_request": _pattern(_CPU, "a CPU quantity", "100m"),
    "memory_request": _pattern(_MEMORY, "a memory quantity", "64Mi"),
    "cpu_limit": _pattern(_CPU, "a CPU quantity", "500m"),
    "memory_limit": _pattern(_MEMORY, "a memory quantity", "128Mi"),
    "enabled": _boolean,
    "replay": _boolean,
    "replay_all_methods": _boolean,
}
_SECTIONS: dict[str, tuple[type, dict[str, Check]]] = {
    "local": (LocalSettings, _LOCAL_FIELDS),
    "cluster": (ClusterSettings, _CLUSTER_FIELDS),
    "kube": (KubeSettings, _KUBE_FIELDS),
}
_TOP_KEYS = (*_TOP_FIELDS, "manifests", "apps", *_SECTIONS)


# ---------------------------------------------------------------------------------------------
# Reading wasmdev.toml
# ---------------------------------------------------------------------------------------------


def load_workspace(root: Path, config_path: Path | None = None) -> Workspace:
    """The workspace at ``root``: its wasmdev.toml (``config_path``, else ROOT/wasmdev.toml when
    present) and its apps' manifests. Raises ManifestError for a bad wasmdev.toml."""
    root = Path(root).expanduser().resolve()
    if config_path is None and (root / CONFIG_NAME).is_file():
        config_path = root / CONFIG_NAME
    if config_path is None:
        settings = Settings(root=root)
        return Workspace(root=root, settings=settings, manifests=tuple(discover_manifests(root)))
    config_path = Path(config_path).expanduser().resolve()
    settings, listed = _read_config(root, config_path)
    manifests = settings.manifests if listed else tuple(discover_manifests(root))
    return Workspace(root=root, settings=settings, manifests=tuple(sorted(manifests)))


def _read_config(root: Path, path: Path) -> tuple[Settings, bool]:
    """The settings and whether the file lists its manifests (else they are discovered)."""
    r = TomlReader(path)
    doc = r.load()
    r.check_keys(doc, "", _TOP_KEYS)
    base = path.parent

    def checked(key: str, check: Check, value: object) -> Any:
        def fail(what: str, fix: str) -> NoReturn:
            r.fail(key, what, fix)

        result = check(value, fail)
        return (base / result) if isinstance(result, Path) and not result.is_absolute() else result

    top = {name: checked(name, check, doc[name]) for name, check in _TOP_FIELDS.items() if name in doc}
    sections = {}
    for section, (cls, kinds) in _SECTIONS.items():
        table = r.table(doc.get(section, {}), section, f"write it as a `[{section}]` table")
        r.check_keys(table, section, tuple(kinds))
        values = {name: checked(f"{section}.{name}", kinds[name], value) for name, value in table.items()}
        sections[section] = cls(**values)

    apps_value = doc.get("apps", {})
    patterns: list[tuple[str, str]] = []
    if "manifests" in doc:
        entries = r.string_list(doc["manifests"], "manifests")
        patterns += [(f"manifests[{i}]", entry) for i, entry in enumerate(entries)]
    apps: dict[str, AppSettings] = {}
    if isinstance(apps_value, list):
        entries = r.string_list(apps_value, "apps")
        patterns += [(f"apps[{i}]", entry) for i, entry in enumerate(entries)]
    else:
        for name, table in r.table(
            apps_value, "apps", "use `[apps.NAME]` tables or an array of globs"
        ).items():
            key = key_join("apps", name)
            table = r.table(table, key, f"write it as a `[{key}]` table")
            r.check_keys(table, key, tuple(_APP_FIELDS))
            values = {k: checked(f"{key}.{k}", _APP_FIELDS[k], v) for k, v in table.items()}
            apps[name] = AppSettings(**values)
    listed = "manifests" in doc or isinstance(apps_value, list)
    manifests = _expand_manifest_patterns(r, base, patterns)
    settings = Settings(
        root=root,
        config_path=path,
        apps=MappingProxyType(apps),
        manifests=manifests,
        **top,
        **sections,
    )
    return settings, listed


def _expand_manifest_patterns(r: TomlReader, base: Path, patterns: list[tuple[str, str]]) -> tuple[Path, ...]:
    """Each entry is a spin.toml, a folder holding one, or a glob of either."""
    found: list[Path] = []
    for key, entry in patterns:
        target = Path(entry).expanduser()
        if not target.is_absolute():
            target = base / target
        if glob.has_magic(entry):
            matches = [Path(m) for m in sorted(glob.glob(str(target), recursive=True))]
            hits = [_as_manifest(m) for m in matches]
            hits = [h for h in hits if h is not None]
            if not hits:
                r.fail(
                    key, f'"{entry}" matches no spin.toml', "fix the pattern, or remove it if the apps moved"
                )
        else:
            manifest = _as_manifest(target)
            if manifest is None:
                r.fail(
                    key,
                    f'no spin.toml at "{entry}"',
                    "give the path (relative to wasmdev.toml) of a spin.toml or its folder",
                )
            hits = [manifest]
        for hit in hits:
            if hit not in found:
                found.append(hit)
    return tuple(found)


def _as_manifest(path: Path) -> Path | None:
    if path.is_dir():
        path = path / MANIFEST_NAME
    return path.resolve() if path.is_file() else None


# ---------------------------------------------------------------------------------------------
# Discovery and ports
# ---------------------------------------------------------------------------------------------


def discover_manifests(root: Path) -> list[Path]:
    """Every spin.toml under ``root``, sorted, skipping hidden folders, VCS data, dependencies,
    virtualenvs (any folder with a pyvenv.cfg) and build outputs."""
    root = Path(root).resolve()
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, onerror=lambda _err: None):
        # Prune in place so os.walk never descends into skipped folders (node_modules is big).
        dirs[:] = [
            d
            for d in dirs
            if d not in SKIP_DIRS
            and not d.startswith(".")
            and not os.path.isfile(os.path.join(folder, d, "pyvenv.cfg"))
        ]
        if MANIFEST_NAME in files:
            found.append(Path(folder) / MANIFEST_NAME)
    return sorted(found)


def app_ports(settings: Settings, app_names: Sequence[str]) -> dict[str, int]:
    """The local port of each app: `[apps.NAME].port` when set, else `base_port + index` in the
    given order, moved up past ports already taken. Two apps never share a port; explicit
    ports that clash are a ManifestError naming both apps."""
    where = settings.config_path or settings.root / CONFIG_NAME
    ports: dict[str, int] = {}
    owner: dict[int, str] = {}
    for name in app_names:
        port = settings.app(name).port
        if port is None:
            continue
        if port in owner:
            raise ManifestError.at(
                where,
                key_join(key_join("apps", name), "port"),
                f"apps `{owner[port]}` and `{name}` are both given port {port}",
                f"give `{name}` another port, or remove one `port` to have it assigned",
            )
        ports[name] = port
        owner[port] = name
    for index, name in enumerate(app_names):
        if name in ports:
            continue
        port = settings.local.base_port + index
        while port in owner:
            port += 1
        if port > 65535:
            raise ManifestError.at(
                where,
                "local.base_port",
                f"no free port at or above {settings.local.base_port} for app `{name}`",
                "lower `local.base_port`",
            )
        ports[name] = port
        owner[port] = name
    return ports
