"""Watching what wasmdev's apps do on the cluster, into the store.

One ``ClusterObserver`` per namespace, with daemon threads (the kubernetes client blocks):
- a pod watch (list, then watch from the list's resourceVersion; relist after a 410 or an outage)
  → ``PodsObserved`` per app;
- an event watch → the newest Warning per pod on its ``PodState.message`` and one ``SYSTEM`` log
  line per new warning, so a sandbox or scheduling failure shows without ``kubectl describe``;
- one log follower per running container (``follow=true&timestamps=true``) → ``LogEmitted``
  (stream POD); reattached when the stream ends while the container is still wanted (container
  restart, API server outage, idle timeout); lines already seen are skipped by timestamp, so a
  reattach does not repeat them. Replaced pods get new followers from the pod watch;
- a metrics sampler (metrics.k8s.io, at the metrics-server's resolution) → ``ResourceSampled``
  with source ``metrics.k8s.io``, or ``MetricsUnavailable`` with the reason when the API is missing
  or has nothing for the app's running pods: the panel says why instead of drawing zeros.

Every loop survives the API server going away: errors are reported once per outage as a SYSTEM
line, retried with exponential backoff, and the observer reconnects without losing track.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity
from kubernetes.watch.watch import iter_resp_lines

from devenv.model import LogLine, LogStream, PodState, ResourceSample
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.cluster.resources import APP_LABEL, managed_selector, object_name
from devenv.targets.cluster.rollout import KubeApis, api_error_text

log = logging.getLogger(__name__)
Obj = dict[str, Any]


@dataclass(frozen=True)
class ObserveSettings:
    metrics_interval_s: float = 15.0  # metrics-server's default resolution; polling faster only repeats it
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    watch_timeout_s: int = 300  # the server ends each watch after this; we re-watch from the last version
    log_idle_timeout_s: float = 300.0  # a silent log stream is reopened (dedup by timestamp) after this
    request_timeout_s: float = 15.0


METRICS_MISSING = (
    "metrics.k8s.io is not served by this cluster ({detail}): no CPU/memory graphs. "
    "k3s bundles metrics-server unless started with --disable=metrics-server"
)
METRICS_EMPTY = (
    "metrics.k8s.io has no samples for this app's running pods: with the Spin shim, pod metrics are "
    "missing on some setups (runwasi cgroup driver vs the kubelet's; containerd-shim-spin#180)"
)


class Backoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum, self.current = initial, maximum, initial

    def next(self) -> float:
        delay, self.current = self.current, min(self.maximum, self.current * 2)
        return delay

    def reset(self) -> None:
        self.current = self.initial


def parse_log_timestamp(stamp: str) -> tuple[str, float]:
    """``2026-01-02T03:04:05.123Z`` → (a sortable key with 9 fraction digits, epoch seconds)."""
    base, _, frac = stamp.rstrip("Z").partition(".")
    nanos = (frac + "000000000")[:9]
    try:
        epoch = datetime.fromisoformat(base + "+00:00").timestamp() + int(nanos) / 1e9
    except ValueError:
        return stamp, time.time()
    return f"{base}.{nanos}", epoch


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


def _loggable_containers(pod: Obj) -> list[str]:
    """Containers that have started at least once: asking earlier answers 400 "waiting to start"."""
    out = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "running" in state or "terminated" in state or int(cs.get("restartCount") or 0) > 0:
            out.append(cs["name"])
    return out


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
        self._followers: dict[tuple[str, str], threading.Thread] = {}
        self._log_marks: dict[tuple[str, str], str] = {}  # (pod, container) -> last timestamp key seen
        self._metrics_notes: dict[str, str] = {}
        self._metrics_stamps: dict[str, tuple[str, ...]] = {}
        self._responses: set[Any] = set()  # open streams, cut on close()
        self._threads: list[threading.Thread] = []
        self._connected = True

    # --- public ---------------------------------------------------------------------------------

    def track(self, app: str) -> None:
        """Observe ``app`` (idempotent); the first call starts the watches."""
        with self._lock:
            self._apps[object_name(app)] = app
            if not self._threads and not self._stop.is_set():
                for name, target in (
                    ("pods", self._run_pod_watch),
                    ("events", self._run_event_watch),
                    ("metrics", self._run_metrics),
                ):
                    t = threading.Thread(target=target, name=f"wasmdev-observe-{name}", daemon=True)
                    self._threads.append(t)
                    t.start()
        self._publish(object_name(app))

    def untrack(self, app: str) -> None:
        with self._lock:
            self._apps.pop(object_name(app), None)
        self._sync_followers()

    def close(self, join_timeout: float = 2.0) -> None:
        self._stop.set()
        with self._lock:
            responses = list(self._responses)
            threads = list(self._threads) + list(self._followers.values())
        for resp in responses:
            _abort(resp)
        for t in threads:
            t.join(timeout=join_timeout)

    @property
    def tracked(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._apps.values())

    # --- streaming plumbing ---------------------------------------------------------------------

    def _lines(self, open_stream: Callable[[], Any]) -> Iterator[str]:
        resp = open_stream()
        with self._lock:
            self._responses.add(resp)
        try:
            yield from iter_resp_lines(resp)
        finally:
            with self._lock:
                self._responses.discard(resp)
            resp.close()
            resp.release_conn()

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

    def _watch_loop(self, what: str, resource: str, list_call: Callable[..., Any], on_list, on_event) -> None:
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
                stream = self._lines(
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
                for line in stream:
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
                backoff.reset()
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
            self._sync_followers()

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
            self._sync_followers()

        self._watch_loop("watching pods", "pods", list_pods, on_list, on_event)

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

        self._watch_loop("watching events", "events", list_events, on_list, on_event)

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

    # --- logs -------------------------------------------------------------------------------------

    def _wanted_logs(self) -> dict[tuple[str, str], str]:
        with self._lock:
            wanted = {}
            for name, pod in self._pods.items():
                app = self._apps.get(self._app_of(pod))
                if app is None or pod["metadata"].get("deletionTimestamp"):
                    continue
                for container in _loggable_containers(pod):
                    wanted[(name, container)] = app
            return wanted

    def _sync_followers(self) -> None:
        if self._stop.is_set():
            return
        wanted = self._wanted_logs()
        with self._lock:
            for key, app in wanted.items():
                thread = self._followers.get(key)
                if thread is None or not thread.is_alive():
                    thread = threading.Thread(
                        target=self._follow, args=(key, app), name=f"wasmdev-logs-{key[0]}", daemon=True
                    )
                    self._followers[key] = thread
                    thread.start()
            for key in [k for k, t in self._followers.items() if k not in wanted and not t.is_alive()]:
                del self._followers[key]
                self._log_marks.pop(key, None)

    def _follow(self, key: tuple[str, str], app: str) -> None:
        pod, container = key
        s = self.settings
        backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        while not self._stop.is_set() and key in self._wanted_logs():
            try:
                lines = self._lines(
                    lambda: self.apis.core.read_namespaced_pod_log(
                        pod,
                        self.namespace,
                        container=container,
                        follow=True,
                        timestamps=True,
                        _preload_content=False,
                        _request_timeout=(s.request_timeout_s, s.log_idle_timeout_s),
                    )
                )
                got_lines = False
                for raw in lines:
                    got_lines = True
                    stamp, _, text = raw.partition(" ")
                    mark, epoch = parse_log_timestamp(stamp)
                    with self._lock:
                        if mark <= self._log_marks.get(key, ""):
                            continue  # already shown before a reattach
                        self._log_marks[key] = mark
                    line = LogLine(epoch, app, LogStream.POD, text, component=pod)
                    self.store.dispatch(a.LogEmitted(line))
                # The stream ended: the container stopped, the pod went, or the server closed it.
                # A stream that ends at once again and again (a crash loop) backs off.
                if got_lines:
                    backoff.reset()
                self._stop.wait(backoff.next())
            except Exception as err:  # noqa: BLE001 - a log stream must never take the observer down
                if self._stop.is_set():
                    return
                if isinstance(err, ApiException) and err.status in (400, 404):
                    # Not started yet (400) or gone (404): the pod watch restarts us when that changes.
                    self._stop.wait(backoff.next())
                    if isinstance(err, ApiException) and err.status == 404:
                        return
                    continue
                self._stop.wait(backoff.next())

    # --- metrics ------------------------------------------------------------------------------------

    def _run_metrics(self) -> None:
        s = self.settings
        backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        while not self._stop.is_set():
            delay = s.metrics_interval_s
            try:
                self._sample_metrics()
                backoff.reset()
            except ApiException as err:
                if err.status in (404, 503):
                    detail = (
                        "HTTP 404: the metrics API group is not registered"
                        if err.status == 404
                        else ("HTTP 503: metrics-server is not answering")
                    )
                    self._set_metrics_note_all(METRICS_MISSING.format(detail=detail))
                else:
                    self._set_metrics_note_all(f"metrics.k8s.io failed: {api_error_text(err)}")
            except Exception as err:  # noqa: BLE001 - an outage: the pod watch reports it; keep the last note
                delay = min(delay, backoff.next())
                log.debug("metrics sample failed: %s", err)
            self._stop.wait(delay)

    def _sample_metrics(self) -> None:
        result = self.apis.custom.list_namespaced_custom_object(
            "metrics.k8s.io",
            "v1beta1",
            self.namespace,
            "pods",
            label_selector=managed_selector(),
            _request_timeout=self.settings.request_timeout_s,
        )
        by_app: dict[str, list[Obj]] = {}
        for item in result.get("items") or []:
            by_app.setdefault(self._app_of(item), []).append(item)
        with self._lock:
            apps = dict(self._apps)
            running = {
                self._app_of(p)
                for p in self._pods.values()
                if (p.get("status") or {}).get("phase") == "Running"
            }
        for label, app in apps.items():
            items = by_app.get(label, [])
            if not items:
                if label in running:
                    self._set_metrics_note(app, METRICS_EMPTY)
                continue
            stamps = tuple(sorted(f"{i['metadata']['name']}@{i.get('timestamp', '')}" for i in items))
            if self._metrics_stamps.get(app) == stamps:
                continue  # metrics-server has not produced a new window yet
            self._metrics_stamps[app] = stamps
            cpu = sum(
                float(parse_quantity(c["usage"].get("cpu", "0")))
                for i in items
                for c in i.get("containers") or []
            )
            memory = sum(
                int(parse_quantity(c["usage"].get("memory", "0")))
                for i in items
                for c in i.get("containers") or []
            )
            sample = ResourceSample(time.time(), app, cpu * 100.0, memory, source="metrics.k8s.io")
            self.store.dispatch(a.ResourceSampled(sample))
            self._set_metrics_note(app, "")

    def _set_metrics_note(self, app: str, note: str) -> None:
        if self._metrics_notes.get(app) == note:
            return
        self._metrics_notes[app] = note
        self.store.dispatch(a.MetricsUnavailable(app=app, reason=note))

    def _set_metrics_note_all(self, note: str) -> None:
        for app in self.tracked:
            self._set_metrics_note(app, note)


def _trim(table: dict[str, str], keep: dict[str, Obj], limit: int = 2000) -> None:
    """Bound a per-pod table: drop the oldest entries for pods not (yet) seen by the pod watch."""
    if len(table) <= limit:
        return
    for key in [k for k in table if k not in keep][: len(table) - limit]:
        del table[key]


def _abort(resp: Any) -> None:
    """Unblock a thread reading ``resp`` (urllib3 2's shutdown), then close it."""
    for method in ("shutdown", "close"):
        try:
            getattr(resp, method)()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
