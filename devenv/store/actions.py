"""Actions: past-tense facts the engine, the targets and the UI dispatch into the store.

State-changing actions are reduced into ``EngineState``; stream actions (logs, requests, samples)
are appended to bounded buffers. Every action is a frozen dataclass, cheap to create on any thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devenv.model import (
    AppSpec,
    BuiltApp,
    KeptBuild,
    LoadReport,
    LogLine,
    NodeRuntime,
    PodState,
    RecordedExchange,
    ReplayReport,
    RequestRecord,
    ResourceSample,
    StepState,
)


class Action:
    """Marker base class for everything that can be dispatched."""


# --- workspace and apps -----------------------------------------------------------------------


@dataclass(frozen=True)
class WorkspaceLoaded(Action):
    root: Path
    target: str


@dataclass(frozen=True)
class AppLoaded(Action):
    """A manifest was read (first time or after an edit)."""

    spec: AppSpec


@dataclass(frozen=True)
class ManifestFailed(Action):
    """A manifest could not be read; ``error`` names the file, key and fix. Only this app stops."""

    name: str  # the app's name if known, else the manifest's folder name
    manifest_path: Path
    error: str


@dataclass(frozen=True)
class AppRemoved(Action):
    name: str


# --- builds -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildStarted(Action):
    app: str
    command: str
    ts: float


@dataclass(frozen=True)
class BuildSucceeded(Action):
    app: str
    built: BuiltApp
    ts: float


@dataclass(frozen=True)
class BuildFailed(Action):
    app: str
    command: str
    output: str  # the tail of the compiler's output
    error: str  # one line: what failed and the fix
    ts: float


# --- deploys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployStarted(Action):
    app: str
    digest: str
    ts: float


@dataclass(frozen=True)
class VersionServing(Action):
    """A build is live on the target: new requests get it."""

    app: str
    digest: str
    urls: tuple[str, ...]
    ts: float
    edit_to_serving_ms: float | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeployFailed(Action):
    app: str
    digest: str
    error: str
    ts: float


@dataclass(frozen=True)
class AppUnsupported(Action):
    """The target recognised the app but cannot host it (e.g. an unsupported component world)."""

    app: str
    reason: str
    ts: float


@dataclass(frozen=True)
class PodsObserved(Action):
    app: str
    pods: tuple[PodState, ...]


@dataclass(frozen=True)
class MetricsUnavailable(Action):
    app: str
    reason: str  # "" clears it


# --- target bootstrap ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapStepChanged(Action):
    step: StepState


@dataclass(frozen=True)
class NodeRuntimeDetected(Action):
    """The target found which Spin (and shim) serves its apps."""

    runtime: NodeRuntime


# --- streams ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEmitted(Action):
    line: LogLine


@dataclass(frozen=True)
class RequestServed(Action):
    record: RequestRecord


@dataclass(frozen=True)
class RequestRecorded(Action):
    """A real request an app served, with its response, captured for replay (recording on);
    kept in a bounded ring per app."""

    exchange: RecordedExchange


@dataclass(frozen=True)
class ResourceSampled(Action):
    sample: ResourceSample


# --- user intents (sent by the UI; the engine subscribes and acts on them) ---------------------


@dataclass(frozen=True)
class RebuildRequested(Action):
    app: str | None  # None = every app


@dataclass(frozen=True)
class RestartRequested(Action):
    app: str


@dataclass(frozen=True)
class WatchPaused(Action):
    pass


@dataclass(frozen=True)
class WatchResumed(Action):
    pass


@dataclass(frozen=True)
class LogsCleared(Action):
    pass


@dataclass(frozen=True)
class ShutdownRequested(Action):
    pass


# --- time travel: history, rollback, recorded requests, replay, load tests ----------------------


@dataclass(frozen=True)
class HistoryChanged(Action):
    """The app's kept builds, newest first (the engine's history is the source of truth)."""

    app: str
    builds: tuple[KeptBuild, ...]


@dataclass(frozen=True)
class RolledBack(Action):
    """An older kept build serves again (dispatched after its VersionServing); the next save
    builds anew."""

    app: str
    digest: str
    ts: float


@dataclass(frozen=True)
class RollbackRequested(Action):
    app: str
    digest: str | None = None  # None = the build before the one serving; else a digest prefix


@dataclass(frozen=True)
class ReplayRequested(Action):
    app: str


@dataclass(frozen=True)
class ReplayFinished(Action):
    app: str
    report: ReplayReport


@dataclass(frozen=True)
class LoadTestRequested(Action):
    app: str
    path: str | None = None  # None = the app's first URL
    duration_s: float = 10.0
    connections: int = 8
    requests: int | None = None  # a count instead of (within) the duration


@dataclass(frozen=True)
class LoadTestStarted(Action):
    app: str
    ts: float


@dataclass(frozen=True)
class LoadTestFinished(Action):
    app: str
    report: LoadReport | None  # None when it could not run (the reason is logged)
