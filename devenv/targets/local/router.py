"""Which runner serves a request path: an app version's routes, as Spin's router picks them.

Routes are matched against the app's ``http_base`` joined with the manifest route. An exact route
beats a wildcard; among wildcards the longest prefix wins ("/static/..." beats "/..."). A
``ServingVersion`` is immutable once built; swapping versions is one reference assignment, and a
request keeps the version it started with (it holds a lease until it finishes).

Swaps and lease acquisition both happen on the server's event loop thread, so a request can
never pick a version that has already been cleaned up.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devenv.model import Route
from devenv.targets.local.cgi import based_route, route_prefix
from devenv.targets.local.executor import ComponentRunner, RunnerTable


@dataclass(frozen=True)
class RouteEntry:
    served: Route  # with the app's base: what the request path is matched against
    manifest: Route  # as written in spin.toml: what the guest is told (X_RAW_COMPONENT_ROUTE)
    runner: ComponentRunner


class ServingVersion:
    """One deployed build of one app: its routes, and a count of the requests running on it."""

    def __init__(
        self, app: str, table: RunnerTable, http_base: str = "/", staging: Path | None = None
    ) -> None:
        self.app = app
        self.digest = table.digest
        self.table = table
        self.http_base = http_base
        entries = [RouteEntry(Route(based_route(http_base, r)), r, runner) for r, runner in table.routes]
        # Most specific first, so the first match wins; stable for equal routes (manifest order).
        self.entries: tuple[RouteEntry, ...] = tuple(
            sorted(entries, key=lambda e: e.served.specificity(), reverse=True)
        )
        self._staging = staging
        self._in_flight = 0
        self._retired = False
        self._lock = threading.Lock()
        self._on_idle: list[Callable[[], None]] = []
        self._cleaned = False

    def match(self, path: str) -> RouteEntry | None:
        for entry in self.entries:
            if entry.served.matches(path):
                return entry
        return None

    def route_lines(self) -> list[str]:
        return [
            f"  {e.served.path:<28} -> component `{e.runner.component_id}` ({e.runner.kind})"
            for e in self.entries
        ]

    def url_paths(self) -> list[str]:
        """One path per route, wildcards shown as their prefix ("/static/..." -> "/static")."""
        seen: list[str] = []
        for raw, _ in self.table.routes:
            path = route_prefix(based_route(self.http_base, raw)) or "/"
            if path not in seen:
                seen.append(path)
        return seen

    # --- leases: a retired version is cleaned up only once its last request finished ----------

    def acquire(self) -> None:
        with self._lock:
            self._in_flight += 1

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            idle = self._retired and self._in_flight == 0
        if idle:
            self._cleanup()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def retire(self) -> None:
        with self._lock:
            self._retired = True
            idle = self._in_flight == 0
        if idle:
            self._cleanup()

    def _cleanup(self) -> None:
        with self._lock:
            if self._cleaned:
                return
            self._cleaned = True
        # The runners' open resources (Spin's SQLite connections, one set per build) go now,
        # not whenever the garbage collector finds them: every deploy opens new ones.
        closed: set[int] = set()
        for _, runner in self.table.routes:
            if id(runner) not in closed:  # several routes may share one component's runner
                closed.add(id(runner))
                runner.close()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        # Drop the runners (and with them the InstancePre/Module references) promptly.
        self.entries = ()
