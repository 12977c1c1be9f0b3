"""The reducer's status transitions: what the apps panel shows after each failure and recovery."""

from __future__ import annotations

from pathlib import Path

from devenv.model import AppSpec, AppStatus, BuildStatus, BuiltApp, EngineState
from devenv.store import actions as a
from devenv.store.reducer import reduce

SPEC = AppSpec("web", Path("/ws/web/spin.toml"))
DIGEST = "sha256:" + "ab" * 32


def run(*actions: a.Action, state: EngineState | None = None) -> EngineState:
    state = state or EngineState()
    for action in actions:
        state = reduce(state, action)
    return state


def serving() -> EngineState:
    return run(
        a.AppLoaded(SPEC),
        a.BuildStarted("web", "make", 1.0),
        a.BuildSucceeded("web", BuiltApp(SPEC, DIGEST, {}, 2.0), 2.0),
        a.VersionServing("web", DIGEST, ("http://127.0.0.1:3000/",), 3.0),
    )


def test_a_fixed_manifest_returns_a_serving_app_to_serving() -> None:
    broken = run(a.ManifestFailed("web", SPEC.manifest_path, "bad key"), state=serving())
    assert broken.apps["web"].status is AppStatus.DEGRADED and broken.apps["web"].error == "bad key"
    fixed = run(a.AppLoaded(SPEC), state=broken).apps["web"]
    assert fixed.status is AppStatus.SERVING and fixed.error == ""


def test_a_fixed_manifest_keeps_a_failed_build_degraded() -> None:
    state = run(
        a.BuildFailed("web", "make", "error: x", "build failed", 4.0),
        a.ManifestFailed("web", SPEC.manifest_path, "bad key"),
        a.AppLoaded(SPEC),
        state=serving(),
    )
    app = state.apps["web"]
    assert app.status is AppStatus.DEGRADED and app.build.status is BuildStatus.FAILED


def test_failures_without_a_serving_version_fail_the_app() -> None:
    state = run(a.AppLoaded(SPEC), a.BuildFailed("web", "make", "out", "build failed", 1.0))
    assert state.apps["web"].status is AppStatus.FAILED
    state = run(a.DeployFailed("web", DIGEST, "refused", 2.0), state=serving())
    assert state.apps["web"].status is AppStatus.DEGRADED and state.apps["web"].serving_digest == DIGEST


def test_a_manifest_read_after_a_failed_first_read_starts_loading() -> None:
    state = run(a.ManifestFailed("web", SPEC.manifest_path, "bad"), a.AppLoaded(SPEC))
    assert state.apps["web"].status is AppStatus.LOADING and state.apps["web"].spec == SPEC


def test_only_changes_bump_the_generation() -> None:
    state = serving()
    assert run(a.PodsObserved("web", ()), state=state) is state
    assert run(a.BuildStarted("nope", "make", 1.0), state=state) is state
    assert run(a.WatchPaused(), state=state).generation == state.generation + 1
