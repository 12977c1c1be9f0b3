"""The Target protocol: where a built app runs. local (in-process wasmtime), k3d, kube.

The engine calls a target only through this protocol; a target reports what it observes (request
logs, guest output, pods, resource samples, bootstrap progress) by dispatching actions into the
store it was given. A target never imports Textual.

Contract:
- ``start`` prepares the target (bootstrap a cluster, open a port) and dispatches
  ``BootstrapStepChanged`` for each step so the UI can show progress. It raises
  ``TargetUnavailable`` with the fix when the target cannot run here, leaving nothing half-made.
- ``deploy`` makes ``built`` the version that serves new requests, atomically: it validates
  (compiles, pushes, rolls out) first and swaps only when that succeeded. Requests in flight finish
  on the version they started with. On failure it raises ``DeployError`` and the previous version
  keeps serving. It raises ``UnsupportedApp`` when it recognises the app but cannot host it.
  It returns the URLs the app is reachable at (and notes for the user), once new requests are
  served by the new version.
- ``remove`` stops serving an app; ``close`` releases everything (idempotent).

Optional abilities are Protocols too, checked with ``isinstance`` (never ``hasattr``): a target
has one by implementing its method. ``ReportsUsage``: per-app cumulative counters the engine's
``ResourceSampler`` turns into rates (the local target; cluster targets report pod metrics
themselves). ``RecordsRequests``: capture real traffic as ``RequestRecorded`` actions for replay.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from devenv.errors import WasmdevError
from devenv.model import BuiltApp

# Headers wasmdev adds to its own requests, read by every serving side (local server, the
# cluster front) and by the engine that sends them.
REPLAY_HEADER = "x-wasmdev-replay"  # replays and load tests: served and measured, never recorded
PROBE_HEADER = "x-wasmdev-probe"  # the prober's polls: it reports its own figure


class UnsupportedApp(WasmdevError):
    """The target recognised the app but cannot host it (e.g. a component world it lacks)."""


@dataclass(frozen=True)
class DeployResult:
    urls: tuple[str, ...]
    notes: tuple[str, ...] = ()  # e.g. "component `api` (wasi:http): runs on the cluster target only"


@runtime_checkable
class Target(Protocol):
    name: str

    async def start(self) -> None: ...

    async def deploy(self, built: BuiltApp) -> DeployResult: ...

    async def remove(self, app: str) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class UsageCounters:
    """One app's resource use so far (cumulative: the sampler turns it into rates)."""

    cpu_seconds_total: float = 0.0  # thread CPU time spent in guests
    memory_high_water_bytes: int = 0  # largest linear memory of a request since the version went live
    requests_total: int = 0
    errors_total: int = 0  # responses with status >= 500


@runtime_checkable
class ReportsUsage(Protocol):
    def usage(self, app: str) -> UsageCounters | Awaitable[UsageCounters]:
        """``app``'s counters; KeyError for an app the target does not serve."""
        ...


@runtime_checkable
class RecordsRequests(Protocol):
    def set_recording(self, on: bool) -> None:
        """While on, each real request an app serves is dispatched as ``RequestRecorded``
        (bodies cut at ``[local] record_body_bytes``); requests carrying ``x-wasmdev-replay``
        (wasmdev's own replays and load tests) are served but not recorded."""
        ...


def loopback_target(url: str) -> tuple[str, dict[str, str]]:
    """``http://hello.localhost:8081/x`` → (``http://127.0.0.1:8081/x``, ``{"Host": "hello.localhost:8081"}``).

    Targets serve apps at ``*.localhost`` names (one ingress host rule per app), which the
    system resolver may not map to loopback; other URLs are returned as they are.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host != "localhost" and not host.endswith(".localhost"):
        return url, {}
    netloc = "127.0.0.1" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl(), {"Host": parts.netloc}


@runtime_checkable
class KeepsImages(Protocol):
    """A target that ships each build as an image in a registry (the cluster targets): a rollback
    applies the kept image again (no packaging, no push) instead of deploying the build anew."""

    def kept_image(self, app: str, digest: str) -> str | None:
        """The image reference this session deployed for that build, if any."""
        ...

    async def redeploy_image(self, built: BuiltApp, image: str) -> DeployResult:
        """Serve ``built`` again from ``image``, with deploy's guarantees (the previous version
        keeps serving when the rollout fails)."""
        ...
