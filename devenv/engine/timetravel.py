"""Time travel for a running session: build history, rollback, replay of recorded requests and
load tests, asked for from the dashboard (store intents) or a second terminal (the control
endpoint). Results go into the store, as everything else does.

The dev loop owns building and deploying: it tells this object each build that went live
(``deployed``), and a rollback goes through the loop's own deploy (``ServeKept``), so a
rolled-back build is what the loop considers serving and the next save builds anew as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from devenv.control.messages import (
    SESSION_WAIT_S,
    ControlReply,
    ControlRequest,
    HistoryQuery,
    LoadCommand,
    ReplayCommand,
    RollbackCommand,
)
from devenv.control.server import ControlServer
from devenv.engine.history import BuildHistory, state_dir
from devenv.engine.loadtest import format_load, path_request, recorded_requests, run_load, unsafe_count
from devenv.engine.replay import format_report, origin_of, replay_exchanges
from devenv.engine.system_log import say
from devenv.errors import WasmdevError
from devenv.kept_builds import ago, history_lines
from devenv.model import (
    AppState,
    BuiltApp,
    EngineState,
    KeptBuild,
    LoadReport,
    ReplayReport,
)
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.base import DeployResult, KeepsImages, RecordsRequests, Target

if TYPE_CHECKING:
    from devenv.config import Workspace


DeployVia = Callable[[], Awaitable[DeployResult]]
# The dev loop's deploy of a kept build: True once it serves (else the store holds why not).
ServeKept = Callable[[BuiltApp, "DeployVia | None"], Awaitable[bool]]

_INTENTS = (a.RollbackRequested, a.ReplayRequested, a.LoadTestRequested)
_DEPLOY_ENDED = (a.VersionServing, a.DeployFailed, a.AppUnsupported, a.AppRemoved)
MAX_LOGGED_REPLAY_LINES = 200
_WATCHED = (*_INTENTS, a.DeployStarted, *_DEPLOY_ENDED)


class TimeTravel:
    def __init__(
        self,
        store: Store,
        workspace: Workspace,
        target: Target,
        serve_kept: ServeKept,
        *,
        control: bool = True,
    ) -> None:
        self.store = store
        self.workspace = workspace
        self.target = target
        self.serve_kept = serve_kept
        local = workspace.settings.local
        self.history = BuildHistory(store, workspace.root, keep=local.keep_builds)
        store.exchanges.resize(local.record_requests)
        self.control = ControlServer(state_dir(workspace.root), self.handle) if control else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rollback_locks: dict[str, asyncio.Lock] = {}
        # app -> the kept digest a rollback is deploying (no auto replay for it; a build the app's
        # worker deploys before the rollback still gets its replay)
        self._rolling_back: dict[str, str] = {}
        self._running: set[tuple[str, str]] = set()  # ("replay" | "load test", app) under way
        # Apps with a deploy under way. A new build serves requests a moment before the engine
        # says so (the target swaps, then returns): a rollback waits for that word, so "the
        # build before the one serving" is judged against the build that really serves.
        self._deploying: dict[str, asyncio.Event] = {}

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve intents and the control endpoint until cancelled."""
        self._loop = asyncio.get_running_loop()
        unsubscribe = self.store.subscribe(self._on_action)
        if isinstance(self.target, RecordsRequests):
            # Real traffic is what replay and load tests reuse: kept from the first request on.
            # (Cluster targets record through their loopback front instead.)
            self.target.set_recording(True)
        try:
            if self.control is not None:
                try:
                    await self.control.start()
                except WasmdevError as err:
                    self.control = None
                    say(
                        self.store,
                        "",
                        f"second-terminal commands unavailable: {err.what} — fix: {err.fix}",
                        "warn",
                    )
                except OSError as err:  # e.g. a read-only workspace
                    self.control = None
                    where = state_dir(self.workspace.root)
                    say(
                        self.store,
                        "",
                        f"second-terminal commands unavailable: cannot create the control socket in {where}: "
                        f"{err.strerror or err} — fix: make the workspace writable, then restart wasmdev up",
                        "warn",
                    )
            await asyncio.Event().wait()
        finally:
            unsubscribe()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.control is not None:
                await self.control.close()
            self.history.close()

    # --- hooks from the dev loop ------------------------------------------------------------------

    async def deployed(self, built: BuiltApp, *, served_at: float, edit_to_serving_ms: float | None) -> None:
        """A build went live (a new one, or a kept one again): keep it, and replay the app's
        recorded requests against it when ``[apps.NAME] replay = true``."""
        app = built.spec.name
        image = ""
        if isinstance(self.target, KeepsImages):
            image = self.target.kept_image(app, built.digest) or ""
        try:
            await self.history.record(
                built, served_at=served_at, edit_to_serving_ms=edit_to_serving_ms, image=image
            )
        except OSError as err:  # a full disk must not stop serving: the build is just not kept
            where = err.filename or self.history.root
            say(
                self.store,
                app,
                f"could not keep build {built.short_digest} for rollback: {err.strerror or err} ({where}); "
                "it serves, but a rollback cannot return to it — fix: free disk space or make "
                f"{state_dir(self.workspace.root)} writable; the next build is kept again",
                "warn",
            )
            return
        if self.workspace.settings.app(app).replay and self._rolling_back.get(app) != built.digest:
            if self.store.exchanges.exchanges(app):
                self._spawn(self._replay_quietly(app))

    def forget(self, app: str) -> None:
        self.history.forget(app)
        self.store.exchanges.forget(app)

    # --- the actions --------------------------------------------------------------------------------

    async def rollback(self, app: str, digest: str | None = None) -> KeptBuild:
        lock = self._rollback_locks.setdefault(app, asyncio.Lock())
        async with lock:
            self._app_state(app)
            await self._deploys_settled(app)
            state = self._app_state(app)
            kept, built = self.history.choose(app, digest, state.serving_digest)
            via: DeployVia | None = None
            if kept.image and isinstance(self.target, KeepsImages):
                target, image = self.target, kept.image

                async def via_image() -> DeployResult:
                    return await target.redeploy_image(built, image)

                via = via_image
            self._rolling_back[app] = built.digest
            try:
                served = await self.serve_kept(built, via)
            finally:
                self._rolling_back.pop(app, None)
            if not served:
                error = self.store.state.apps[app].error if app in self.store.state.apps else ""
                raise WasmdevError(
                    what=f"app {app}: rolling back to {kept.short_digest} failed; what served keeps serving"
                    + (f": {error.splitlines()[0]}" if error else ""),
                    fix="see the app's log; a save builds anew",
                )
            now = time.time()
            self.store.dispatch(a.RolledBack(app=app, digest=kept.digest, ts=now))
            files = "; its granted files were too large to keep, so today's serve" if kept.live_files else ""
            say(
                self.store,
                app,
                f"rolled back to {kept.short_digest}… (built {ago(kept.built_at, now)}){files}; save to build again",
            )
            return kept

    async def replay(self, app: str, *, all_methods: bool = False) -> ReplayReport:
        state = self._app_state(app)
        if not state.urls or not state.serving_digest:
            raise WasmdevError(what=f"app {app} serves no URL yet", fix="wait until it serves, then replay")
        exchanges = self.store.exchanges.exchanges(app)
        with self._one_at_a_time("replay", app):
            report = await replay_exchanges(
                app, exchanges, origin_of(state.urls[0]), state.serving_digest, all_methods=all_methods
            )
        self.store.dispatch(a.ReplayFinished(app=app, report=report))
        # Every line in the log too: it is what `wasmdev up --headless` prints.
        lines = format_report(report)
        level = "warn" if report.differences else "info"
        for line in lines[:MAX_LOGGED_REPLAY_LINES]:
            say(self.store, app, line.rstrip(), level)
        if len(lines) > MAX_LOGGED_REPLAY_LINES:
            say(
                self.store,
                app,
                f"… {len(lines) - MAX_LOGGED_REPLAY_LINES} more lines: `wasmdev replay {app}`",
                level,
            )
        return report

    async def load(self, command: LoadCommand) -> LoadReport:
        app = command.app
        state = self._app_state(app)
        if not state.urls:
            raise WasmdevError(what=f"app {app} serves no URL yet", fix="wait until it serves, then load it")
        if command.path is not None:
            requests = [path_request(command.path)]
            label = command.path
        else:
            exchanges = self.store.exchanges.exchanges(app)
            requests = recorded_requests(exchanges, all_methods=command.all_methods)
            label = "recorded requests"
            if not requests:  # nothing (safe) recorded yet: the app's first URL
                first = state.urls[0][len(origin_of(state.urls[0])) :] or "/"
                requests, label = [path_request(first)], first
            left_out = 0 if command.all_methods else unsafe_count(exchanges)
            if left_out:
                label += f" ({left_out} recorded POST/PUT/DELETE/PATCH… left out; --all-methods sends them)"
        with self._one_at_a_time("load test", app):
            self.store.dispatch(a.LoadTestStarted(app=app, ts=time.time()))
            report: LoadReport | None = None
            try:
                report = await run_load(
                    app,
                    origin_of(state.urls[0]),
                    requests,
                    connections=command.connections,
                    duration_s=command.duration_s,
                    count=command.requests,
                    label=label,
                )
            finally:
                self.store.dispatch(a.LoadTestFinished(app=app, report=report))
        for line in format_load(report):
            say(self.store, app, line.strip())
        return report

    @contextlib.contextmanager
    def _one_at_a_time(self, kind: str, app: str) -> Iterator[None]:
        """One replay and one load test per app at a time: a second `t` would measure the two
        runs against each other, and the first to end would clear the panel's "running"."""
        if (kind, app) in self._running:
            raise WasmdevError(
                what=f"app {app}: a {kind} is already running",
                fix="wait for it to finish (the time-travel panel shows when), then start another",
            )
        self._running.add((kind, app))
        try:
            yield
        finally:
            self._running.discard((kind, app))

    # --- the control endpoint ------------------------------------------------------------------------

    async def handle(self, request: ControlRequest) -> ControlReply:
        match request:
            case HistoryQuery(app=app):
                state = self._app_state(app)
                return ControlReply(
                    lines=tuple(history_lines(self.history.builds(app), state.serving_digest))
                )
            case RollbackCommand(app=app, digest=digest):
                kept = await self.rollback(app, digest)
                return ControlReply(
                    lines=(
                        f"{app}: serving {kept.short_digest} (built {ago(kept.built_at)}) again; "
                        "save to build again",
                    )
                )
            case ReplayCommand(app=app, all_methods=all_methods):
                report = await self.replay(app, all_methods=all_methods)
                return ControlReply(
                    lines=tuple(format_report(report)), exit_code=1 if report.differences else 0
                )
            case LoadCommand():
                report = await self.load(request)
                return ControlReply(lines=tuple(format_load(report)))
        raise WasmdevError(
            what=f"unknown command {request!r}", fix="use the same wasmdev version as the session"
        )

    # --- intents from the dashboard ---------------------------------------------------------------

    def _on_action(self, _state: EngineState, action: a.Action) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        if isinstance(action, _WATCHED):
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._intent, action)

    async def _deploys_settled(self, app: str, timeout_s: float = SESSION_WAIT_S) -> None:
        ended = self._deploying.get(app)
        if ended is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), timeout_s)

    def _intent(self, action: a.Action) -> None:
        match action:
            case a.DeployStarted(app=app):
                self._deploying.setdefault(app, asyncio.Event()).clear()
            case a.VersionServing(app=app) | a.DeployFailed(app=app) | a.AppUnsupported(app=app):
                self._deploying.pop(app, asyncio.Event()).set()
            case a.AppRemoved(name=app):
                self._deploying.pop(app, asyncio.Event()).set()
            case a.RollbackRequested(app=app, digest=digest):
                self._spawn(self._reported(app, self.rollback(app, digest)))
            case a.ReplayRequested(app=app):
                self._spawn(self._reported(app, self.replay(app)))
            case a.LoadTestRequested(app=app, path=path, duration_s=d, connections=c, requests=n):
                command = LoadCommand(app=app, path=path, duration_s=d, connections=c, requests=n)
                self._spawn(self._reported(app, self.load(command)))

    async def _reported(self, app: str, work: Awaitable[object]) -> None:
        try:
            await work
        except WasmdevError as err:
            say(self.store, app, " — fix: ".join(p for p in (err.what, err.fix) if p), "error")

    async def _replay_quietly(self, app: str) -> None:
        all_methods = self.workspace.settings.app(app).replay_all_methods
        await self._reported(app, self.replay(app, all_methods=all_methods))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _app_state(self, app: str) -> AppState:
        state = self.store.state.apps.get(app)
        if state is None:
            known = ", ".join(sorted(self.store.state.apps)) or "none"
            raise WasmdevError(what=f"no app named {app} in this session", fix=f"use one of: {known}")
        return state
