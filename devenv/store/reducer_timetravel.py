"""The reducer's time-travel part: kept builds, rollbacks, replay reports and load tests.
Pure, like the main reducer, which hands it every action it does not handle itself."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from devenv.model import AppState, EngineState
from devenv.store import actions as a


def _put(state: EngineState, app: AppState) -> EngineState:
    apps = dict(state.apps)
    apps[app.name] = app
    return replace(state, apps=MappingProxyType(apps))


def reduce_timetravel(state: EngineState, action: a.Action) -> EngineState:
    match action:
        case (
            a.HistoryChanged(app=name)
            | a.RolledBack(app=name)
            | a.ReplayFinished(app=name)
            | a.LoadTestStarted(app=name)
            | a.LoadTestFinished(app=name)
        ):
            old = state.apps.get(name)
        case _:
            return state
    if old is None:
        return state
    match action:
        case a.HistoryChanged(builds=builds):
            return state if builds == old.history else _put(state, replace(old, history=builds))
        case a.RolledBack(digest=digest, ts=ts):
            if old.serving_digest != digest:
                return state  # a newer build went live in between: it is not a rollback any more
            return _put(state, replace(old, rolled_back_at=ts))
        case a.ReplayFinished(report=report):
            return _put(state, replace(old, replay=report))
        case a.LoadTestStarted():
            return _put(state, replace(old, load_running=True))
        case a.LoadTestFinished(report=report):
            return _put(state, replace(old, load_running=False, load=report or old.load))
    return state
