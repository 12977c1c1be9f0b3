"""Watching what wasmdev's apps do on the cluster, into the store.

One ``ClusterObserver`` per namespace, with daemon threads (the kubernetes client blocks):
- a pod watch (list, then watch from the list's resourceVersion; relist after a 410 or an outage)
  → ``PodsObserved`` per app;
- an event watch → the newest Warning per pod on its ``PodState.message`` and one ``SYSTEM`` log
  line per new warning, so a sandbox or scheduling failure shows without ``kubectl describe``;
- log followers per running container (pod_logs.py) → ``LogEmitted`` (stream POD), started and
  ended as the pod watch sees containers start and pods go;
- a metrics sampler (pod_metrics.py) → ``ResourceSampled`` or a ``MetricsUnavailable`` note.

Every loop survives the API server going away: errors are reported once per outage as a SYSTEM
line, retried with exponential backoff, and the observer reconnects without losing track.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from devenv.model import LogLine, LogStream, PodState
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.cluster.pod_logs import LogFollowers, loggable_containers, parse_log_timestamp
from devenv.targets.cluster.pod_metrics import METRICS_EMPTY, METRICS_MISSING, MetricsSampler
from devenv.targets.cluster.resources import APP_LABEL, managed_selector, object_name
from devenv.targets.cluster.rollout import KubeApis, api_error_text
from devenv.targets.cluster.streams import Backoff, ObserveSettings, OpenStreams

__all__ = [
    "METRICS_EMPTY",
    "METRICS_MISSING",
    "ClusterObserver",
    "ObserveSettings",
    "parse_log_timestamp",
    "pod_state",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
OnList = Callable[[list[Obj]], None]
OnEvent = Callable[[str, Obj], None]


def pod_state(pod: Obj, warning: str = "") -> PodState:
    """The store's view of a pod: phase, readiness, restarts and the most telling reason."""
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    reason = message = ""
    for cs in statuses:
        state = cs.get("state") or {}
        detail = state.get("waiting") or state.get("terminated") or {}
        if detail.get("reason"):
            reason, message = detail["reason"], detail.get("message", "")
            break
    if not reason:
        for cond in status.get("conditions") or []:
            if cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
                reason, message = "Unschedulable", cond.get("message", "")
    if pod["metadata"].get("deletionTimestamp"):
        reason = reason or "Terminating"
    if warning and not message:
        message = warning
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return PodState(
        name=pod["metadata"]["name"],
        phase=status.get("phase", "Unknown"),
        ready=ready,
        restarts=sum(int(cs.get("restartCount") or 0) for cs in statuses),
        reason=reason or status.get("reason", ""),
        message=message,
        image=containers[0].get("image", ""),
    )


class ClusterObserver:
    def __init__(
        self,
        store: Store,
        apis: KubeApis,
        namespace: str,
        settings: ObserveSettings | None = None,
        where: str = "",
    ) -> None:
        self.store = store
        self.apis = apis
        self.namespace = namespace
        self.settings = settings or ObserveSettings()
        self.where = where or f"{apis.host}, namespace {namespace}"
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._apps: dict[str, str] = {}  # label value -> app name in the store
        self._pods: dict[str, Obj] = {}
        self._warnings: dict[str, str] = {}  # pod -> newest Warning event text
        # Warnings about pods the pod watch has not shown yet (the two watches race): announced
        # when the pod appears.
        self._unannounced: dict[str, str] = {}
        self._streams = OpenStreams()  # cut on close()
        self._threads: list[threading.Thread] = []
        self._connected = True
        self._logs = LogFollowers(
            store, apis, namespace, self.settings, self._streams, self._stop, self._wanted_logs
        )
        self._metrics = MetricsSampler(
            store, apis, namespace, self.settings, self._stop, self._tracked_labels, self._running_labels
        )

    # --- public ---------------------------------------------------------------------------------

    def track(self, app: str) -> None:
        """Observe ``app`` (idempotent); the first call starts the watches."""
        with self._lock:
            self._apps[object_name(app)] = app
            if not self._threads and not self._stop.is_set():
                for name, target in (
                    ("pods", self._run_pod_watch),
                    ("events", self._run_event_watch),
                    ("metrics", self._metrics.run),
                ):
                    t = threading.Thread(target=target, name=f"wasmdev-observe-{name}", daemon=True)
                    self._threads.append(t)
                    t.start()
        self._publish(object_name(app))

    def untrack(self, app: str) -> None:
        with self._lock:
            self._apps.pop(object_name(app), None)
        self._logs.sync()

    def close(self, join_timeout: float = 2.0) -> None:
        self._stop.set()
        self._streams.abort_all()
        with self._lock:
            threads = list(self._threads)
        for t in threads + self._logs.threads():
            t.join(timeout=join_timeout)

    @property
    def tracked(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._apps.values())

    def _tracked_labels(self) -> dict[str, str]:
        with self._lock:
            return dict(self._apps)

    def _running_labels(self) -> set[str]:
        with self._lock:
            return {
                self._app_of(p)
                for p in self._pods.values()
                if (p.get("status") or {}).get("phase") == "Running"
            }

    # --- connection state -----------------------------------------------------------------------

    def _system(self, text: str, level: str = "warn") -> None:
        for app in self.tracked:
            self.store.dispatch(a.LogEmitted(LogLine(time.time(), app, LogStream.SYSTEM, text, level=level)))

    def _outage(self, what: str, err: BaseException, delay: float) -> None:
        with self._lock:
            first = self._connected
            self._connected = False
        if first:
            self._system(f"lost the API server ({self.where}) while {what}: {api_error_text(err)}; retrying")
        log.debug("%s failed (%s); retrying in %.2fs", what, err, delay)

    def _connected_again(self) -> None:
        with self._lock:
            was_down, self._connected = not self._connected, True
        if was_down:
            self._system(f"reconnected to the API server ({self.where})", level="info")

    def _watch_loop(
        self, what: str, list_call: Callable[..., Any], on_list: OnList, on_event: OnEvent
    ) -> None:
        """List, then watch from the list's version; relist after 410 Gone or any error (with backoff)."""
        s = self.settings
        backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    listed = list_call(self.namespace, _request_timeout=s.request_timeout_s)
                    on_list([self.apis.plain(i) for i in listed.items])
                    rv = listed.metadata.resource_version
                    self._connected_again()
                stream = self._streams.lines(
                    lambda rv=rv: list_call(
                        self.namespace,
                        watch=True,
                        resource_version=rv,
                        allow_watch_bookmarks=True,
                        timeout_seconds=s.watch_timeout_s,
                        _preload_content=False,
                        _request_timeout=(s.request_timeout_s, s.watch_timeout_s + 30),
                    )
                )
                opened, events = time.monotonic(), 0
                for line in stream:
                    events += 1
                    if self._stop.is_set():
                        break
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        if obj.get("code") == 410:  # our version was compacted away: start over
                            rv = None
                            break
                        raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if event.get("type") != "BOOKMARK":
                        on_event(event["type"], obj)
                if events or time.monotonic() - opened >= 1.0:
                    backoff.reset()
                else:  # a watch that ends at once, again and again, must not spin
                    self._stop.wait(backoff.next())
            except Exception as err:  # noqa: BLE001 - the observer must outlive any API failure
                if self._stop.is_set():
                    return
                if isinstance(err, ApiException) and err.status == 410:
                    rv = None
                    continue
                delay = backoff.next()
                self._outage(what, err, delay)
                rv = None  # relist: events during the outage may be gone
                self._stop.wait(delay)

    # --- pods -------------------------------------------------------------------------------------

    def _run_pod_watch(self) -> None:
        core = self.apis.core

        def list_pods(namespace: str, **kw: Any) -> Any:
            return core.list_namespaced_pod(namespace, label_selector=managed_selector(), **kw)

        def on_list(pods: list[Obj]) -> None:
            with self._lock:
                before = {self._app_of(p) for p in self._pods.values()}
                self._pods = {p["metadata"]["name"]: p for p in pods}
                labels = before | {self._app_of(p) for p in pods} | set(self._apps)
            for label in labels:
                self._publish(label)
            self._announce_pending(pods)
            self._logs.sync()

        def on_event(kind: str, pod: Obj) -> None:
            name = pod["metadata"]["name"]
            with self._lock:
                if kind == "DELETED":
                    self._pods.pop(name, None)
                    self._warnings.pop(name, None)
                else:
                    self._pods[name] = pod
            self._publish(self._app_of(pod))
            if kind == "ADDED":
                self._announce_pending([pod])
            self._logs.sync()

        self._watch_loop("watching pods", list_pods, on_list, on_event)

    def _app_of(self, pod: Obj) -> str:
        return ((pod.get("metadata") or {}).get("labels") or {}).get(APP_LABEL, "")

    def _publish(self, label: str) -> None:
        with self._lock:
            app = self._apps.get(label)
            if app is None:
                return
            pods = sorted(
                (p for p in self._pods.values() if self._app_of(p) == label),
                key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]),
            )
            states = tuple(pod_state(p, self._warnings.get(p["metadata"]["name"], "")) for p in pods)
        self.store.dispatch(a.PodsObserved(app=app, pods=states))

    # --- events -----------------------------------------------------------------------------------

    def _run_event_watch(self) -> None:
        core = self.apis.core
        seen: dict[str, int] = {}  # event name -> count already reported

        def list_events(namespace: str, **kw: Any) -> Any:
            return core.list_namespaced_event(namespace, field_selector="involvedObject.kind=Pod", **kw)

        def on_list(events: list[Obj]) -> None:
            # Old warnings describe the pods' current trouble but are not news: no log lines for them.
            for e in events:
                seen[e["metadata"]["name"]] = int(e.get("count") or 1)
                self._note_warning(e, announce=False)

        def on_event(kind: str, e: Obj) -> None:
            if kind == "DELETED":
                return
            count = int(e.get("count") or 1)
            name = e["metadata"]["name"]
            fresh = seen.get(name, 0) < count
            seen[name] = count
            if len(seen) > 5000:  # bounded: forget the oldest half
                for key in list(seen)[:2500]:
                    del seen[key]
            self._note_warning(e, announce=fresh)

        self._watch_loop("watching events", list_events, on_list, on_event)

    def _note_warning(self, event: Obj, announce: bool) -> None:
        if event.get("type") != "Warning":
            return
        pod = (event.get("involvedObject") or {}).get("name", "")
        text = f"{event.get('reason', '')}: {event.get('message', '')}"
        with self._lock:
            self._warnings[pod] = text
            pod_obj = self._pods.get(pod)
            if pod_obj is None:
                if announce:
                    self._unannounced[pod] = text
                _trim(self._warnings, keep=self._pods)
                _trim(self._unannounced, keep=self._pods)
                return
            label = self._app_of(pod_obj)
            app = self._apps.get(label)
        if app is None:
            return
        self._publish(label)
        if announce:
            self._announce(app, pod, text)

    def _announce(self, app: str, pod: str, text: str) -> None:
        line = LogLine(time.time(), app, LogStream.SYSTEM, f"pod {pod}: {text}", level="warn")
        self.store.dispatch(a.LogEmitted(line))

    def _announce_pending(self, pods: list[Obj]) -> None:
        for pod in pods:
            name = pod["metadata"]["name"]
            with self._lock:
                text = self._unannounced.pop(name, None)
                app = self._apps.get(self._app_of(pod))
            if text is not None and app is not None:
                self._announce(app, name, text)

    # --- which logs to follow ----------------------------------------------------------------------

    def _wanted_logs(self) -> dict[tuple[str, str], str]:
        with self._lock:
            wanted = {}
            for name, pod in self._pods.items():
                app = self._apps.get(self._app_of(pod))
                if app is None or pod["metadata"].get("deletionTimestamp"):
                    continue
                for container in loggable_containers(pod):
                    wanted[(name, container)] = app
            return wanted


def _trim(table: dict[str, str], keep: dict[str, Obj], limit: int = 2000) -> None:
    """Bound a per-pod table: drop the oldest entries for pods not (yet) seen by the pod watch."""
    if len(table) <= limit:
        return
    for key in [k for k in table if k not in keep][: len(table) - limit]:
        del table[key]
