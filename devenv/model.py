"""Frozen dataclasses shared by every layer: what an app is (read from spin.toml), what a build
produced, and the state the store holds. Nothing here does I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

# ---------------------------------------------------------------------------------------------
# The app, as its spin.toml describes it
# ---------------------------------------------------------------------------------------------


class Executor(StrEnum):
    """How an HTTP trigger runs its component."""

    HTTP = "http"  # a wasi:http component (Spin's default executor)
    WAGI = "wagi"  # a WASI preview 1 command module, CGI over stdin/stdout


@dataclass(frozen=True)
class Route:
    """A Spin HTTP route: ``/hello`` matches exactly, ``/static/...`` matches the prefix and below."""

    path: str  # as written in the manifest, e.g. "/static/..."

    @property
    def wildcard(self) -> bool:
        return self.path.endswith("/...")

    @property
    def prefix(self) -> str:
        """The fixed part: "/static" for "/static/...", "/" for "/...", the path itself otherwise."""
        if not self.wildcard:
            return self.path
        base = self.path[: -len("/...")]
        return base or "/"

    def matches(self, request_path: str) -> bool:
        if not self.wildcard:
            return request_path == self.path or (
                request_path.rstrip("/") == self.path and request_path != "/"
            )
        p = self.prefix
        return p == "/" or request_path == p or request_path.startswith(p.rstrip("/") + "/")

    def specificity(self) -> tuple[int, int]:
        """Exact routes beat wildcards; longer prefixes beat shorter ones (as Spin's router does)."""
        return (0 if self.wildcard else 1, len(self.prefix))


@dataclass(frozen=True)
class HttpTrigger:
    route: Route
    component: str  # component id
    executor: Executor = Executor.HTTP
    wagi_argv: str = "${SCRIPT_NAME} ${ARGS}"  # Spin's default WAGI argv template
    wagi_entrypoint: str = "_start"


@dataclass(frozen=True)
class FileMount:
    """A ``files`` entry: a host glob (relative to the app root) or a directory placed at a guest path."""

    source: str  # glob pattern or directory, relative to the app root
    destination: str | None = None  # None for a glob: each match keeps its relative path under "/"


@dataclass(frozen=True)
class BuildSpec:
    command: tuple[str, ...]  # one or more shell commands, run in order in ``workdir``
    workdir: Path  # absolute
    watch: tuple[str, ...] = ()  # globs relative to ``workdir``


@dataclass(frozen=True)
class ComponentSpec:
    id: str
    source: Path | None  # absolute path to the .wasm (None when the source is a URL)
    source_url: str | None = None
    source_digest: str | None = None
    description: str = ""
    files: tuple[FileMount, ...] = ()
    exclude_files: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    allowed_outbound_hosts: tuple[str, ...] = ()
    build: BuildSpec | None = None
    variables: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    key_value_stores: tuple[str, ...] = ()  # store labels the component may open
    sqlite_databases: tuple[str, ...] = ()  # database labels the component may open


@dataclass(frozen=True)
class AppSpec:
    name: str
    manifest_path: Path  # absolute path to spin.toml
    version: str = ""
    description: str = ""
    components: Mapping[str, ComponentSpec] = field(default_factory=lambda: MappingProxyType({}))
    http_triggers: tuple[HttpTrigger, ...] = ()
    other_triggers: tuple[str, ...] = ()  # trigger types the app declares that are not http
    http_base: str = "/"
    variables: Mapping[str, Mapping[str, object]] = field(default_factory=lambda: MappingProxyType({}))
    manifest_version: int = 2
    warnings: tuple[str, ...] = ()  # things Spin accepts but wasmdev cannot serve, deprecations

    @property
    def root(self) -> Path:
        return self.manifest_path.parent


# ---------------------------------------------------------------------------------------------
# What a build produced
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltApp:
    """The outcome of building an app: the spec it was built from and a digest over its artifacts.

    ``digest`` is a sha256 over the manifest and every component's wasm bytes; two builds with the
    same digest are the same program, so targets may skip redeploying them.
    """

    spec: AppSpec
    digest: str  # "sha256:…"
    wasm: Mapping[str, Path]  # component id -> built .wasm
    built_at: float  # time.time()
    trigger_time: float | None = None  # when the edit that caused this build was seen (for edit-to-serving)
    # A kept build's copy of the files its app grants (same layout as the app folder): staged
    # from there instead of the app folder, so a rollback serves the files as they were.
    files_root: Path | None = None

    @property
    def short_digest(self) -> str:
        return self.digest.split(":", 1)[-1][:12]


# ---------------------------------------------------------------------------------------------
# State held by the store
# ---------------------------------------------------------------------------------------------


class BuildStatus(StrEnum):
    IDLE = "idle"
    BUILDING = "building"
    OK = "ok"
    FAILED = "failed"


class AppStatus(StrEnum):
    LOADING = "loading"  # read, not built or deployed yet
    STARTING = "starting"  # deploying the first version
    SERVING = "serving"
    DEGRADED = "degraded"  # serving an older version; the newest build or deploy failed
    FAILED = "failed"  # nothing serving: manifest, build or deploy error and no older version
    UNSUPPORTED = "unsupported"  # the target cannot host it (e.g. a component world it lacks)
    STOPPED = "stopped"


@dataclass(frozen=True)
class BuildState:
    status: BuildStatus = BuildStatus.IDLE
    started_at: float | None = None
    finished_at: float | None = None
    digest: str | None = None
    command: str = ""  # the command running or that failed
    output: str = ""  # the tail of a failed build's output (bounded)
    error: str = ""  # one-line reason


@dataclass(frozen=True)
class PodState:
    name: str
    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    ready: bool
    restarts: int = 0
    reason: str = ""  # e.g. ImagePullBackOff, CrashLoopBackOff
    message: str = ""
    image: str = ""


@dataclass(frozen=True)
class AppState:
    name: str
    manifest_path: Path
    target: str
    status: AppStatus = AppStatus.LOADING
    spec: AppSpec | None = None  # None when the manifest could not be read
    build: BuildState = field(default_factory=BuildState)
    serving_digest: str | None = None
    serving_since: float | None = None
    urls: tuple[str, ...] = ()
    edit_to_serving_ms: float | None = None
    error: str = ""  # the current manifest / deploy / hosting problem, with its fix
    notes: tuple[str, ...] = ()  # e.g. "component api: runs on the cluster target only"
    pods: tuple[PodState, ...] = ()
    metrics_note: str = ""  # why resource graphs are empty (e.g. metrics API missing)
    # Time travel: the kept builds (newest first), when a rollback put an older one in service
    # (None once a build of the current source serves), and the last replay and load test.
    history: tuple[KeptBuild, ...] = ()
    rolled_back_at: float | None = None
    replay: ReplayReport | None = None
    load: LoadReport | None = None
    load_running: bool = False


@dataclass(frozen=True)
class KeptBuild:
    """One build in an app's history: kept ready to serve again without building or compiling
    (frozen wasm locally, an image tag in the registry on a cluster)."""

    app: str
    digest: str
    built_at: float
    changed: tuple[str, ...] = ()  # source files (relative to the app) changed since the build before
    edit_to_serving_ms: float | None = None
    served: bool = False  # it went live at least once
    served_at: float | None = None  # when it last went live
    image: str = ""  # cluster targets: the image reference a rollback applies again
    # Its granted files were too large to copy (frozen_builds.FILES_MAX_BYTES): a rollback
    # serves the app folder's files as they are now.
    live_files: bool = False

    @property
    def short_digest(self) -> str:
        return self.digest.split(":", 1)[-1][:12]


@dataclass(frozen=True)
class ExchangeDifference:
    """How one replayed request's response differs from the recorded one. Header lines are
    shown with secrets masked; ``body_diff`` is a unified text diff or a byte summary."""

    request_id: str
    method: str
    target: str  # path and query, as sent
    recorded_status: int
    replayed_status: int  # 0 when the replay got no response at all
    header_changes: tuple[str, ...] = ()  # "- name: old" / "+ name: new"
    body_diff: str = ""
    error: str = ""  # why no response came back


@dataclass(frozen=True)
class ReplayReport:
    app: str
    ts: float
    serving_digest: str  # the build the requests were replayed against
    replayed: int
    differences: tuple[ExchangeDifference, ...] = ()
    skipped: int = 0  # recorded with a truncated body: sending a part would not be the same request
    unsafe_skipped: int = 0  # POST/PUT/DELETE/PATCH…, not sent again unless asked (they change state)


@dataclass(frozen=True)
class LoadReport:
    app: str
    ts: float
    url: str  # the path, or "recorded requests"
    connections: int
    duration_s: float
    requests: int
    errors: int  # transport failures and 5xx answers
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    generator: str = "aiohttp"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class StepState:
    """A target bootstrap step (check docker, create cluster, wait for nodes, …) shown with progress."""

    key: str
    title: str
    status: StepStatus = StepStatus.PENDING
    started_at: float | None = None
    finished_at: float | None = None
    detail: str = ""  # the reason on failure, or a short progress note
    fix: str = ""


@dataclass(frozen=True)
class NodeRuntime:
    """Which Spin serves the target's apps: a cluster node's containerd-shim-spin (``shim`` set)
    or an installed ``spin`` CLI (``shim`` None, ``image`` ""). Unknown parts are None."""

    image: str  # the node image (name or ID) it was read from; "" for a local Spin
    shim: str | None
    spin: str | None

    @property
    def spin_version(self) -> tuple[int, int] | None:
        """(major, minor) of the Spin, or None when unknown."""
        parts = [int(p) for p in re.findall(r"\d+", self.spin or "")[:2]]
        return (parts[0], parts[1] if len(parts) > 1 else 0) if parts else None

    def describe(self) -> str:
        spin = f"Spin {self.spin}" if self.spin else "Spin version unknown"
        if self.shim is None:
            return spin if not self.image else f"unknown shim (node image {self.image})"
        return f"{spin} (shim {self.shim})"


@dataclass(frozen=True)
class EngineState:
    apps: Mapping[str, AppState] = field(default_factory=lambda: MappingProxyType({}))
    target: str = "local"
    watching: bool = True  # False while the user paused watching
    bootstrap: tuple[StepState, ...] = ()
    node_runtime: NodeRuntime | None = None  # the Spin serving the target's apps, once known
    workspace: Path | None = None
    generation: int = 0  # bumped on every reduced action


# ---------------------------------------------------------------------------------------------
# Streams: logs, requests and metric samples (kept in bounded buffers, not in EngineState)
# ---------------------------------------------------------------------------------------------


class LogStream(StrEnum):
    STDOUT = "stdout"  # guest output
    STDERR = "stderr"  # guest output
    REQUEST = "request"  # one line per served request
    BUILD = "build"  # build command output
    SYSTEM = "system"  # wasmdev's own messages (deployed, failed, …)
    POD = "pod"  # container logs from the cluster


@dataclass(frozen=True)
class LogLine:
    ts: float
    app: str
    stream: LogStream
    text: str
    component: str = ""
    request_id: str = ""
    level: str = "info"  # info, warn, error
    seq: int = 0  # assigned by the log buffer


@dataclass(frozen=True)
class RequestRecord:
    ts: float
    app: str
    component: str
    method: str
    path: str
    status: int
    latency_ms: float
    request_id: str = ""
    probe: bool = False  # True for wasmdev's own latency probes


@dataclass(frozen=True)
class RecordedExchange:
    """One real request an app served and the response it gave, kept for replay (time travel).

    Bodies are kept up to the recording cap (``*_truncated`` says a body was cut there, and a
    truncated request is not replayed). Headers are kept as sent; masking secrets (authorization,
    cookie) is the job of whatever shows them, since a replay must send them unmasked.
    ``replayed`` marks requests wasmdev itself sent (replays, load tests), which are not recorded
    again as real traffic.
    """

    ts: float
    app: str
    request_id: str
    method: str
    path: str  # the raw path, without the query
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: int
    response_headers: tuple[tuple[str, str], ...]
    response_body: bytes
    latency_ms: float
    body_truncated: bool = False
    response_truncated: bool = False
    component: str = ""


@dataclass(frozen=True)
class ResourceSample:
    """Resource use of one app over the last sampling interval."""

    ts: float
    app: str
    cpu_percent: float | None  # guest CPU time / wall time * 100 (one core = 100); None = unknown
    memory_bytes: int | None  # linear-memory high-water mark (local) or working set (cluster)
    requests_per_second: float = 0.0
    source: str = "local"  # "local" or "metrics.k8s.io"
