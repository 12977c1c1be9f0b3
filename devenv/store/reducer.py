"""The reducer: (EngineState, Action) -> EngineState. Pure; the store calls it under its lock."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from devenv.model import AppState, AppStatus, BuildState, BuildStatus, EngineState, StepState
from devenv.store import actions as a
from devenv.store.reducer_timetravel import reduce_timetravel

OUTPUT_TAIL_CHARS = 16_000  # keep the end of a failed build's output; compilers put the summary last


def _put(state: EngineState, app: AppState) -> EngineState:
    apps = dict(state.apps)
    apps[app.name] = app
    return replace(state, apps=MappingProxyType(apps))


def _app(state: EngineState, name: str) -> AppState | None:
    return state.apps.get(name)


def reduce(state: EngineState, action: a.Action) -> EngineState:
    new = _reduce(state, action)
    if new is state:
        return state
    return replace(new, generation=state.generation + 1)


def _reduce(state: EngineState, action: a.Action) -> EngineState:  # noqa: C901 - one branch per action
    match action:
        case a.WorkspaceLoaded(root=root, target=target):
            return replace(state, workspace=root, target=target)

        case a.AppLoaded(spec=spec):
            old = _app(state, spec.name)
            if old is None:
                return _put(
                    state,
                    AppState(
                        name=spec.name, manifest_path=spec.manifest_path, target=state.target, spec=spec
                    ),
                )
            # A fixed manifest clears its error: an app that still serves is degraded only while
            # its newest build failed, and one that never read its manifest starts loading.
            status = old.status
            if status in (AppStatus.FAILED, AppStatus.DEGRADED) and old.serving_digest:
                status = AppStatus.DEGRADED if old.build.status is BuildStatus.FAILED else AppStatus.SERVING
            elif status is AppStatus.FAILED and old.spec is None:
                status = AppStatus.LOADING
            return _put(
                state, replace(old, spec=spec, manifest_path=spec.manifest_path, error="", status=status)
            )

        case a.ManifestFailed(name=name, manifest_path=path, error=error):
            old = _app(state, name)
            if old is None:
                return _put(
                    state,
                    AppState(
                        name=name,
                        manifest_path=path,
                        target=state.target,
                        status=AppStatus.FAILED,
                        error=error,
                    ),
                )
            # An edit broke the manifest: the version already serving keeps serving.
            return _put(state, replace(old, status=_failed_status(old), error=error))

        case a.AppRemoved(name=name):
            if name not in state.apps:
                return state
            apps = dict(state.apps)
            del apps[name]
            return replace(state, apps=MappingProxyType(apps))

        case a.BuildStarted(app=name, command=command, ts=ts):
            old = _app(state, name)
            if old is None:
                return state
            build = BuildState(
                status=BuildStatus.BUILDING, started_at=ts, command=command, digest=old.build.digest
            )
            return _put(state, replace(old, build=build))

        case a.BuildSucceeded(app=name, built=built, ts=ts):
            old = _app(state, name)
            if old is None:
                return state
            build = BuildState(
                status=BuildStatus.OK,
                started_at=old.build.started_at,
                finished_at=ts,
                digest=built.digest,
                command=old.build.command,
            )
            return _put(state, replace(old, build=build))

        case a.BuildFailed(app=name, command=command, output=output, error=error, ts=ts):
            old = _app(state, name)
            if old is None:
                return state
            build = BuildState(
                status=BuildStatus.FAILED,
                started_at=old.build.started_at,
                finished_at=ts,
                digest=old.build.digest,
                command=command,
                output=output[-OUTPUT_TAIL_CHARS:],
                error=error,
            )
            return _put(state, replace(old, build=build, status=_failed_status(old), error=error))

        case a.DeployStarted(app=name):
            old = _app(state, name)
            if old is None or old.serving_digest:
                return state
            return _put(state, replace(old, status=AppStatus.STARTING))

        case a.VersionServing(app=name, digest=digest, urls=urls, ts=ts, edit_to_serving_ms=e2s, notes=notes):
            old = _app(state, name)
            if old is None:
                return state
            e2s = e2s if e2s is not None else old.edit_to_serving_ms
            return _put(
                state,
                replace(
                    old,
                    status=AppStatus.SERVING,
                    serving_digest=digest,
                    serving_since=ts,
                    urls=urls,
                    edit_to_serving_ms=e2s,
                    error="",
                    notes=notes,
                    rolled_back_at=None,  # a RolledBack that follows sets it again
                ),
            )

        case a.DeployFailed(app=name, error=error):
            old = _app(state, name)
            if old is None:
                return state
            return _put(state, replace(old, status=_failed_status(old), error=error))

        case a.AppUnsupported(app=name, reason=reason):
            old = _app(state, name)
            if old is None:
                return state
            return _put(state, replace(old, status=AppStatus.UNSUPPORTED, error=reason, urls=()))

        case a.PodsObserved(app=name, pods=pods):
            old = _app(state, name)
            if old is None or old.pods == pods:
                return state
            return _put(state, replace(old, pods=pods))

        case a.MetricsUnavailable(app=name, reason=reason):
            old = _app(state, name)
            if old is None or old.metrics_note == reason:
                return state
            return _put(state, replace(old, metrics_note=reason))

        case a.BootstrapStepChanged(step=step):
            steps = list(state.bootstrap)
            for i, s in enumerate(steps):
                if s.key == step.key:
                    steps[i] = _merge_step(s, step)
                    break
            else:
                steps.append(step)
            return replace(state, bootstrap=tuple(steps))

        case a.NodeRuntimeDetected(runtime=runtime):
            return state if state.node_runtime == runtime else replace(state, node_runtime=runtime)

        case a.WatchPaused():
            return state if not state.watching else replace(state, watching=False)

        case a.WatchResumed():
            return state if state.watching else replace(state, watching=True)

    return reduce_timetravel(state, action)


def _failed_status(app: AppState) -> AppStatus:
    """After a manifest, build or deploy failure: an older version still serving makes it degraded."""
    return AppStatus.DEGRADED if app.serving_digest else AppStatus.FAILED


def _merge_step(old: StepState, new: StepState) -> StepState:
    # A step keeps its first start time so the elapsed time shown is the whole step's.
    started = old.started_at if old.started_at is not None else new.started_at
    return replace(new, started_at=started)
