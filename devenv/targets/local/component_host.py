"""Hosts wasi:http 0.2 components (Spin 2/3's ``fermyon:spin/http-trigger@2.0.0`` and
``wasi:http/proxy@0.2.x``) in-process on wasmtime-py: the local target's ``ComponentRunner`` for
the default HTTP executor.

``build_runner`` runs once per (component, build): load the compiled component from the compile
cache, check its world, define every import on a Linker (Python WASI, see ``wasi/``), and
instantiate once to prove it links. ``handle`` then gives every request a fresh Store and
instance, as Spin does, with the request deadline (epoch interruption) and the memory cap (store
limits); a trap, a timeout, a refused import or a missing response is a ``GuestError`` for that
request only.

Two patches make wasmtime-py's component API fast enough for this (both pinned to wasmtime 50
and tested): ``wasi/fastbytes`` moves ``list<u8>`` as whole buffers, ``wasi/fastcall`` calls host
functions without re-reading their types on every call.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import wasmtime
from wasmtime.component import Component, ExportIndex, Linker

from devenv.model import ComponentSpec, LogStream
from devenv.targets.base import UnsupportedApp
from devenv.targets.local.compile_cache import CompileCache
from devenv.targets.local.executor import (
    ComponentRunner,
    ExecutionStats,
    GuestError,
    GuestLog,
    GuestRequest,
    GuestResponse,
    RequestLimits,
    last_line,
)
from devenv.targets.local.file_mounts import Preopen
from devenv.targets.local.guest_watch import GuestWatch, stopped_reason, unwatch, watch_store
from devenv.targets.local.runtime import WasmRuntime
from devenv.targets.local.spin.deploy import SpinAppSettings, check_imports, host_interfaces, spin_host
from devenv.targets.local.wasi import REFUSALS, fastbytes
from devenv.targets.local.wasi.cli import flush_stdio
from devenv.targets.local.wasi.filesystem import report_denials
from devenv.targets.local.wasi.host import GuestTrap, HostConfig, HostContext, activate
from devenv.targets.local.wasi.http_types import (
    ErrorResponse,
    IncomingRequest,
    OutgoingResponse,
    ResponseOutparam,
)
from devenv.targets.local.wasi.registry import Interface, LinkReport, link_imports, unknown_import_note
from devenv.targets.local.wasi.worlds import World, classify

__all__ = ["HttpComponentRunner", "build_runner"]


def build_runner(
    component: ComponentSpec,
    wasm_path: Path,
    runtime: WasmRuntime,
    cache: CompileCache,
    limits: RequestLimits,
    preopens: Sequence[Preopen] = (),
    wasm: bytes | None = None,
    spin_app: SpinAppSettings | None = None,
) -> ComponentRunner:
    """A runner for one wasi:http component of one build.

    ``preopens`` are the component's granted files (``file_mounts.prepare_preopens``); without
    them the guest sees no files. ``wasm`` is the file's content when the caller has already read
    it (a componentize-py component is ~18 MB: reading it again costs a restart milliseconds).
    ``spin_app`` carries what Spin's host APIs need from the app (its manifest for variables and
    ``.spin/``, the runtime config file, the app's own address for ``self``); without it the
    component sees no variables and no stores.
    Raises ``UnsupportedApp`` for a world this host cannot run
    (Spin 4 / WASI 0.3, a command, a core module) and for imports that do not link, and
    ``DeployError`` for an import it will never serve, a required variable without a value or a
    store label without a store (the previous version keeps serving).
    """
    where = f"component `{component.id}` ({wasm_path})"
    engine = runtime.engine
    try:
        compiled = cache.component_file(engine, wasm_path, wasm)
    except OSError as err:
        raise UnsupportedApp(what=f"cannot read {wasm_path}: {err.strerror or err}", where=where) from None
    except wasmtime.WasmtimeError as err:
        raise UnsupportedApp(
            what=f"{wasm_path.name} is not a component this wasmtime can compile: {last_line(str(err))}",
            where=where,
            fix="build it for fermyon:spin/http-trigger@2.0.0 or wasi:http/proxy@0.2.x",
        ) from None
    world = classify(compiled, engine)
    if world.handler is None:
        raise UnsupportedApp(what=world.reason, where=where, fix=world.fix)
    interfaces = host_interfaces()
    notes = check_imports(component, world, interfaces, spin_app)
    spin = spin_host(component, spin_app)
    fastbytes.install()
    config = HostConfig(
        component_id=component.id,
        environment=tuple(component.environment.items()),
        preopens=tuple(preopens),
        allowed_outbound_hosts=tuple(component.allowed_outbound_hosts),
        spin=spin,
        self_origin=spin_app.self_origin if spin_app is not None else None,
    )
    runner = HttpComponentRunner(component.id, compiled, runtime, limits, config, world, interfaces)
    runner.check_links()
    runner.deploy_notes = notes
    return runner


@dataclass(frozen=True)
class _Outcome:
    response: GuestResponse | None
    failure: str | None


class HttpComponentRunner:
    """A ``ComponentRunner`` for one wasi:http component of one build. Immutable once built; safe
    to call from several worker threads at once (each request has its own Store)."""

    kind = "wasi-http"

    def __init__(
        self,
        component_id: str,
        component: Component,
        runtime: WasmRuntime,
        limits: RequestLimits,
        config: HostConfig,
        world: World,
        interfaces: Sequence[Interface] | None = None,
    ) -> None:
        self.component_id = component_id
        self.timeout_s = limits.timeout_s
        self.world = world
        self._runtime = runtime
        # What the deploy should tell the user about this component (imports it will not serve)
        self.deploy_notes: tuple[str, ...] = ()
        self._component = component
        engine = self._engine = runtime.engine
        self._limits = limits
        self._config = config
        # From the runtime, which remembers the longest deadline it handed out: close() must
        # be able to interrupt a component stuck in a loop as it does a WAGI module.
        self._deadline_ticks = runtime.deadline_ticks(limits.timeout_s)
        self._linker = Linker(engine)
        self.link_report: LinkReport = link_imports(
            self._linker,
            component,
            engine,
            interfaces if interfaces is not None else host_interfaces(),
            REFUSALS,
            import_names=world.imports,
        )
        assert world.handler is not None
        iface = component.get_export_index(world.handler)
        handle = component.get_export_index("handle", iface) if iface is not None else None
        if handle is None:
            raise UnsupportedApp(what=f"{world.handler} exports no `handle` function", where=component_id)
        self._handle_index: ExportIndex = handle

    def check_links(self) -> None:
        """Instantiate once, at deploy: a component whose imports cannot be satisfied is refused
        here, before it replaces a working version, not on its first request. Host functions
        work as in a request (a start function may read a clock); their output is dropped."""
        store = wasmtime.Store(self._engine)
        store.set_epoch_deadline(self._deadline_ticks)
        store.set_limits(memory_size=self._limits.memory_bytes)
        ctx = HostContext(
            config=self._config,
            log=lambda stream, text: None,
            deadline=time.monotonic() + self._limits.timeout_s,
            timeout_s=self._limits.timeout_s,
        )
        activate(ctx)
        try:
            self._linker.instantiate(store, self._component)
        except (GuestTrap, wasmtime.WasmtimeError) as err:
            raise UnsupportedApp(
                what="the component does not link on the local target: "
                + (ctx.trap_reason or last_line(str(err))),
                where=self.component_id,
                fix="run it on the cluster target",
            ) from None
        finally:
            activate(None)
            ctx.close_all()
            ctx.table.clear()

    def close(self) -> None:
        """Close this build's Spin store and database connections (shared files are closed
        once, however many runners of the build use them)."""
        if self._config.spin is not None:
            self._config.spin.close()

    def handle(self, request: GuestRequest, log: GuestLog) -> tuple[GuestResponse, ExecutionStats]:
        started = time.monotonic()
        memory_error = [False]

        def guest_log(stream: LogStream, text: str) -> None:
            # A guest language runtime reports a refused memory.grow as its own out-of-memory
            # error, then traps: the trap alone would not say why.
            if stream is LogStream.STDERR and "MemoryError" in text:
                memory_error[0] = True
            log(stream, text)

        ctx = HostContext(
            config=self._config,
            log=guest_log,
            deadline=request.deadline or started + self._limits.timeout_s,
            timeout_s=self._limits.timeout_s,
        )
        store = wasmtime.Store(self._engine)
        runtime = self._runtime
        watch = GuestWatch(ctx.deadline, request.client_gone, lambda: runtime.stopping)
        watch_key = watch_store(ctypes.cast(store.ptr(), ctypes.c_void_p).value or 0, watch)
        store.set_epoch_deadline(watch.first_ticks())
        store.set_limits(memory_size=self._limits.memory_bytes)
        cpu_start = time.thread_time()
        activate(ctx)
        try:
            outcome = self._run(store, ctx, request)
            stopped = stopped_reason(watch, self.timeout_s)
            if outcome.failure is not None and stopped is not None:
                outcome = _Outcome(None, stopped)
            if outcome.failure is not None and outcome.failure.startswith("trapped") and memory_error[0]:
                mib = self._limits.memory_bytes // (1024 * 1024)
                outcome = _Outcome(None, f"out of memory: the guest ran out of its {mib} MiB memory cap")
        finally:
            activate(None)
            flush_stdio(ctx)
            report_denials(ctx)
            ctx.close_all()
            ctx.table.clear()
            del store  # the Store owns the instance and every handle the guest still held
            unwatch(watch_key)
        stats = ExecutionStats(cpu_seconds=time.thread_time() - cpu_start, memory_bytes=0)
        if outcome.failure is not None:
            raise GuestError(outcome.failure, stats)
        assert outcome.response is not None
        return outcome.response, stats

    def _run(self, store: wasmtime.Store, ctx: HostContext, request: GuestRequest) -> _Outcome:
        try:
            instance = self._linker.instantiate(store, self._component)
            func = instance.get_func(store, self._handle_index)
            if func is None:
                return _Outcome(None, f"{self.world.handler}#handle is not a function")
            req = ctx.own(IncomingRequest(request))
            out = ctx.own(ResponseOutparam())
            func(store, req, out)
        except (GuestTrap, wasmtime.WasmtimeError) as err:
            message = str(err)
            _drop_tracebacks(err)
            # Decide from this request's context, not from the exception: wasmtime-py hands a
            # host function's exception back through one process-wide slot, so with requests
            # on several threads the exception raised here may not be this request's.
            if ctx.exit_success is True and ctx.trap_reason is None:
                return self._response(ctx)  # exit(ok) after answering is a normal end
            return _Outcome(None, self._failure_reason(ctx, message))
        return self._response(ctx)

    def _failure_reason(self, ctx: HostContext, message: str) -> str:
        if ctx.exit_success is False:
            return "exited with status 1"
        if ctx.trap_reason is not None:
            return ctx.trap_reason  # our host function trapped it, and said why
        unsupported = unknown_import_note(self.link_report, message)
        if unsupported is not None:
            ctx.note(unsupported)
            return unsupported
        text = message.lower()
        if "interrupt" in text:
            if self._runtime.stopping:
                return "stopped: wasmdev is shutting down"
            return f"timed out after {self._limits.timeout_s:g}s (the request deadline)"
        mib = self._limits.memory_bytes // (1024 * 1024)
        if "memory" in text and ("limit" in text or "exceeds" in text):
            return f"out of memory: the component needs more than the {mib} MiB cap"
        return "trapped: " + last_line(message)

    def _response(self, ctx: HostContext) -> _Outcome:
        response = ctx.response
        if response is None:
            return _Outcome(None, "the component returned without setting a response (response-outparam.set)")
        if isinstance(response, ErrorResponse):
            return _Outcome(None, f"the component answered with error-code {response.code}")
        assert isinstance(response, OutgoingResponse)
        body = response.body
        if body is not None and not body.finished:
            return _Outcome(None, "the component did not finish the response body (outgoing-body.finish)")
        headers = tuple(
            (name, value.decode("utf-8", errors="replace")) for name, value in response.headers.entries
        )
        data = bytes(body.sink.data) if body is not None else b""
        return _Outcome(GuestResponse(status=response.status, headers=headers, body=data), None)


def _drop_tracebacks(err: BaseException | None) -> None:
    """Free a failed request's Store now rather than at the next cycle collection.

    wasmtime-py's ``enter_wasm`` keeps the exception it raises in its own frame: a cycle
    through the traceback, which also holds ``_run``'s frame and so the Store, its instance and
    its pooling-allocator slots. Enough trapped requests between two collections exhausted the
    pool ("maximum concurrent limit of 256 for core instances reached") for every request."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        err.__traceback__ = None
        err = err.__context__
