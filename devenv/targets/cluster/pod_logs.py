"""Pod logs into the store: one follower thread per running container.

Each follower reads ``follow=true&timestamps=true`` and dispatches ``LogEmitted`` (stream POD,
``component`` = the pod's name, so replicas can be told apart). When the stream ends while the
container is still wanted (a container restart, an API server outage, the idle timeout) it
reattaches; lines whose timestamp it has already passed are skipped, so a reattach repeats nothing.
Which containers are wanted is the pod watch's call (``sync``): replaced pods get new followers,
and followers of deleted pods end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from kubernetes.client.exceptions import ApiException

from devenv.model import LogLine, LogStream
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.cluster.rollout import KubeApis
from devenv.targets.cluster.streams import Backoff, ObserveSettings, OpenStreams

Key = tuple[str, str]  # (pod, container)


def parse_log_timestamp(stamp: str) -> tuple[str, float]:
    """``2026-01-02T03:04:05.123Z`` → (a sortable key with 9 fraction digits, epoch seconds).

    The API trims trailing zeros from RFC 3339 fractions, so raw strings do not sort."""
    base, _, frac = stamp.rstrip("Z").partition(".")
    nanos = (frac + "000000000")[:9]
    try:
        epoch = datetime.fromisoformat(base + "+00:00").timestamp() + int(nanos) / 1e9
    except ValueError:
        return stamp, time.time()
    return f"{base}.{nanos}", epoch


def loggable_containers(pod: dict) -> list[str]:
    """Containers that have started at least once: asking earlier answers 400 "waiting to start"."""
    out = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "running" in state or "terminated" in state or int(cs.get("restartCount") or 0) > 0:
            out.append(cs["name"])
    return out


class LogFollowers:
    def __init__(
        self,
        store: Store,
        apis: KubeApis,
        namespace: str,
        settings: ObserveSettings,
        streams: OpenStreams,
        stop: threading.Event,
        wanted: Callable[[], dict[Key, str]],
    ) -> None:
        self.store = store
        self.apis = apis
        self.namespace = namespace
        self.settings = settings
        self._streams = streams
        self._stop = stop
        self._wanted = wanted  # (pod, container) -> app, from the pod watch's view
        self._lock = threading.Lock()
        self._threads: dict[Key, threading.Thread] = {}
        self._marks: dict[Key, str] = {}  # last timestamp key shown per container

    def sync(self) -> None:
        """Start followers for newly wanted containers; forget ended ones no longer wanted."""
        if self._stop.is_set():
            return
        wanted = self._wanted()
        with self._lock:
            for key, app in wanted.items():
                thread = self._threads.get(key)
                if thread is None or not thread.is_alive():
                    thread = threading.Thread(
                        target=self._follow, args=(key, app), name=f"wasmdev-logs-{key[0]}", daemon=True
                    )
                    self._threads[key] = thread
                    thread.start()
            for key in [k for k, t in self._threads.items() if k not in wanted and not t.is_alive()]:
                del self._threads[key]
                self._marks.pop(key, None)

    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._threads.values())

    def _follow(self, key: Key, app: str) -> None:
        pod, container = key
        s = self.settings
        backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        while not self._stop.is_set() and key in self._wanted():
            try:
                got_lines = self._read(key, app)
                # The stream ended: the container stopped, the pod went, or the server closed it.
                # A stream that ends at once again and again (a crash loop) backs off.
                if got_lines:
                    backoff.reset()
                self._stop.wait(backoff.next())
            except Exception as err:  # noqa: BLE001 - a log stream must never take the observer down
                if self._stop.is_set():
                    return
                self._stop.wait(backoff.next())
                if isinstance(err, ApiException) and err.status == 404:
                    return  # the pod is gone; the pod watch starts a follower if it comes back

    def _read(self, key: Key, app: str) -> bool:
        pod, container = key
        s = self.settings
        lines = self._streams.lines(
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
                if mark <= self._marks.get(key, ""):
                    continue  # already shown before a reattach
                self._marks[key] = mark
            self.store.dispatch(a.LogEmitted(LogLine(epoch, app, LogStream.POD, text, component=pod)))
        return got_lines
