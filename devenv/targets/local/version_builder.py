"""Turn a ``BuiltApp`` into a ``ServingVersion``: compile, link, check, and build every runner.

Runs in a worker thread (compiling can take seconds). Nothing here touches what is serving: the
caller swaps the result in only when this returned without an error, so a broken build leaves
the previous version serving.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import wasmtime

from devenv.errors import DeployError
from devenv.model import AppSpec, BuiltApp, ComponentSpec, Executor, HttpTrigger, Route
from devenv.targets.base import UnsupportedApp
from devenv.targets.local.compile_cache import CompileCache
from devenv.targets.local.executor import ComponentRunner, RequestLimits, RunnerTable
from devenv.targets.local.file_mounts import Preopen, prepare_preopens
from devenv.targets.local.host_settings import HostApiSettings
from devenv.targets.local.router import ServingVersion
from devenv.targets.local.runtime import WasmRuntime
from devenv.targets.local.wagi import WagiConfig, WagiRunner
from devenv.targets.local.wasm_kind import WasmKind, wasm_kind

if TYPE_CHECKING:
    from devenv.targets.local.spin.deploy import SpinAppSettings

COMPONENT_HOST_MODULE = "devenv.targets.local.component_host"


@dataclass(frozen=True)
class VersionPlan:
    version: ServingVersion
    notes: tuple[str, ...]
    compiled_keys: frozenset[str] = frozenset()  # its compile-cache entries (kept for rollback)
    host_apis: HostApiSettings | None = None  # what it was checked with; serving processes get the same


def not_hosted_note(component_id: str, detail: str = "") -> str:
    note = (
        f"component `{component_id}` is a wasi:http component: runs on the cluster target; "
        "local hosting not yet supported"
    )
    return f"{note} ({detail})" if detail else note


def _component_host() -> ModuleType | None:
    try:
        return importlib.import_module(COMPONENT_HOST_MODULE)
    except ImportError as err:
        if err.name == COMPONENT_HOST_MODULE:
            return None  # not written yet: report, don't fail
        raise  # the module exists but is broken: that is a bug to see, not to hide


class _Builder:
    def __init__(
        self,
        built: BuiltApp,
        runtime: WasmRuntime,
        cache: CompileCache,
        limits: RequestLimits,
        staging: Path,
        host_apis: HostApiSettings | None = None,
    ) -> None:
        self.built = built
        self.host_apis = host_apis
        self._spin_app: SpinAppSettings | None = None  # one per deploy: components granted one store share its file
        self.spec: AppSpec = built.spec
        self.runtime = runtime
        self.cache = cache
        self.limits = limits
        self.staging = staging
        self.notes: list[str] = []
        self._bytes: dict[str, bytes] = {}
        self._pre: dict[str, wasmtime.InstancePre] = {}
        self._exports: dict[str, frozenset[str]] = {}
        self._components: dict[str, ComponentRunner | None] = {}
        self._preopens: dict[str, tuple[Preopen, ...]] = {}
        self.refusals: list[UnsupportedApp] = []

    def preopens(self, component: ComponentSpec) -> tuple[Preopen, ...]:
        """Stage the component's granted files once, however many routes share it."""
        if component.id not in self._preopens:
            staged = prepare_preopens(self.spec, component, self.staging / component.id, self.built.files_root)
            self._preopens[component.id] = tuple(staged)
        return self._preopens[component.id]

    def where(self, component_id: str) -> str:
        return f"{self.spec.manifest_path} [component.{component_id}]"

    def wasm_path(self, component: ComponentSpec) -> Path:
        path = self.built.wasm.get(component.id) or component.source
        if path is None:
            raise DeployError(
                what=f"component `{component.id}` has no local wasm file (source is {component.source_url!r})",
                where=self.where(component.id),
                fix="build it to a local file and point `source` at it",
            )
        return path

    def unreadable(self, component: ComponentSpec, path: Path, err: OSError) -> DeployError:
        return DeployError(
            what=f"cannot read {path}: {err.strerror or err}",
            where=self.where(component.id),
            fix="run the app's build, or fix `source`",
        )

    def wasm(self, component: ComponentSpec) -> bytes:
        if component.id not in self._bytes:
            path = self.wasm_path(component)
            try:
                self._bytes[component.id] = path.read_bytes()
            except OSError as err:
                raise self.unreadable(component, path, err) from None
        return self._bytes[component.id]

    def header(self, component: ComponentSpec) -> bytes:
        """The file's first 8 bytes: enough to tell a module from a component without reading
        (and, for a component, hashing) all of it; the compile cache decides if it needs more."""
        if component.id in self._bytes:
            return self._bytes[component.id][:8]
        path = self.wasm_path(component)
        try:
            with path.open("rb") as f:
                return f.read(8)
        except OSError as err:
            raise self.unreadable(component, path, err) from None

    def kind(self, component: ComponentSpec) -> WasmKind:
        kind = wasm_kind(self.header(component))
        if kind is None:
            raise DeployError(
                what=f"{self.wasm_path(component)} is not a WebAssembly binary",
                where=self.where(component.id),
                fix="check `source` and the build command's output file",
            )
        return kind

    def instance_pre(self, component: ComponentSpec, trigger: HttpTrigger) -> wasmtime.InstancePre:
        """The component's module, compiled and linked once however many routes share it; each
        trigger's own `entrypoint` is checked against its exports."""
        pre = self._pre.get(component.id)
        if pre is None:
            pre = self._pre[component.id] = self._link(component)
        if trigger.wagi_entrypoint not in self._exports[component.id]:
            raise DeployError(
                what=f"the module exports no function `{trigger.wagi_entrypoint}`, the WAGI entrypoint "
                f"of route {trigger.route.path}",
                where=self.where(component.id),
                fix="build a WASI command (with `_start`), or set `entrypoint` in the trigger's executor",
            )
        return pre

    def _link(self, component: ComponentSpec) -> wasmtime.InstancePre:
        engine = self.runtime.engine
        try:
            module = self.cache.module(engine, self.wasm(component))
        except wasmtime.WasmtimeError as err:
            raise DeployError(
                what=f"{self.wasm_path(component)} does not compile: {_first_line(err)}",
                where=self.where(component.id),
                fix="fix the build; the previous version keeps serving",
            ) from None
        self._exports[component.id] = frozenset(e.name for e in module.exports)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        try:
            return linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as err:
            raise DeployError(
                what=f"the module imports something the local target does not provide: {_first_line(err)}",
                where=self.where(component.id),
                fix="a WAGI module may import only wasi_snapshot_preview1",
            ) from None

    def wagi_runner(self, component: ComponentSpec, trigger: HttpTrigger) -> WagiRunner:
        if self.kind(component) is WasmKind.COMPONENT:
            raise DeployError(
                what=f"component `{component.id}` is a component, but its trigger uses the WAGI executor",
                where=self.where(component.id),
                fix="WAGI runs WASI preview 1 core modules (e.g. --target wasm32-wasi); "
                'for a Spin HTTP component remove `executor = { type = "wagi" }`',
            )
        pre = self.instance_pre(component, trigger)
        config = WagiConfig(
            route=trigger.route,
            argv_template=trigger.wagi_argv,
            entrypoint=trigger.wagi_entrypoint,
            http_base=self.spec.http_base,
            environment=tuple(component.environment.items()),
            preopens=self.preopens(component),
        )
        return WagiRunner(component.id, pre, self.runtime, self.limits, config)

    def http_runner(self, component: ComponentSpec) -> ComponentRunner | None:
        if component.id in self._components:
            return self._components[component.id]
        if self.kind(component) is WasmKind.MODULE:
            raise DeployError(
                what=f"component `{component.id}` is a core module, but its trigger uses the default "
                "(wasi:http) executor",
                where=self.where(component.id),
                fix='if it is a WAGI module, add executor = { type = "wagi" } to its [[trigger.http]]',
            )
        runner: ComponentRunner | None = None
        host = _component_host()
        build_runner = getattr(host, "build_runner", None) if host is not None else None
        if build_runner is None:
            self.notes.append(not_hosted_note(component.id))
        else:
            try:
                runner = build_runner(
                    component=component,
                    wasm_path=self.wasm_path(component),
                    runtime=self.runtime,
                    cache=self.cache,
                    limits=self.limits,
                    preopens=self.preopens(component),
                    wasm=self._bytes.get(component.id),  # None: the cache reads it if it must
                    spin_app=self.spin_app(),
                )
                self.notes.extend(runner.deploy_notes)
            except UnsupportedApp as err:
                # The whole refusal, fix included: it is the user's only clue what to change.
                self.refusals.append(err)
                note = f"component `{component.id}`: {err.what}"
                self.notes.append(f"{note} (fix: {err.fix})" if err.fix else note)
        self._components[component.id] = runner
        return runner

    def spin_app(self) -> SpinAppSettings | None:
        """Spin's host API settings for this deploy (None: the component sees no variables or
        stores). Imported here, not at the top: only apps with components need the host APIs,
        whose module loads the Redis and PostgreSQL clients."""
        if self.host_apis is None:
            return None
        if self._spin_app is None:
            from devenv.targets.local.spin.deploy import SpinAppSettings

            self._spin_app = SpinAppSettings(
                app=self.spec,
                env=dict(os.environ),
                runtime_config=self.host_apis.runtime_config,
                self_origin=self.host_apis.self_origin,
            )
        return self._spin_app

    def build(self) -> VersionPlan:
        if not self.spec.http_triggers:
            kinds = ", ".join(self.spec.other_triggers) or "none"
            raise UnsupportedApp(
                what=f"app `{self.spec.name}` has no HTTP triggers (triggers: {kinds}); "
                "the local target serves HTTP only",
                where=str(self.spec.manifest_path),
            )
        routes: list[tuple[Route, ComponentRunner]] = []
        for trigger in self.spec.http_triggers:
            component = self.spec.components.get(trigger.component)
            if component is None:
                raise DeployError(
                    what=f"route {trigger.route.path} names component `{trigger.component}`, which is not defined",
                    where=f"{self.spec.manifest_path} [[trigger.http]]",
                    fix=f"add [component.{trigger.component}] or fix `component`",
                )
            if trigger.executor is Executor.WAGI:
                routes.append((trigger.route, self.wagi_runner(component, trigger)))
            else:
                runner = self.http_runner(component)
                if runner is not None:
                    routes.append((trigger.route, runner))
        if not routes:
            fixes = list(dict.fromkeys(r.fix for r in self.refusals if r.fix))
            wheres = list(dict.fromkeys(r.where for r in self.refusals if r.where))
            raise UnsupportedApp(
                what="; ".join(self.notes),
                where=str(self.spec.manifest_path) + (f" ({'; '.join(wheres)})" if wheres else ""),
                fix="; ".join(fixes),
            )
        table = RunnerTable(digest=self.built.digest, routes=routes)
        version = ServingVersion(self.spec.name, table, self.spec.http_base, staging=self.staging)
        return VersionPlan(version, tuple(self.notes))


def build_version(
    built: BuiltApp,
    runtime: WasmRuntime,
    cache: CompileCache,
    limits: RequestLimits,
    staging: Path,
    host_apis: HostApiSettings | None = None,
) -> VersionPlan:
    """Compile and link every component of ``built``; raise DeployError/UnsupportedApp, or return
    a version ready to swap in (plus notes about what is not served locally)."""
    with cache.tracking() as keys:
        plan = _Builder(built, runtime, cache, limits, staging, host_apis).build()
    return VersionPlan(plan.version, plan.notes, frozenset(keys), host_apis)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
