"""CPU and memory per app from ``metrics.k8s.io`` (k3s bundles metrics-server), into the store.

Sampled at the metrics-server's resolution: a window already reported is not reported again.
When the API is missing (404: the APIService is not registered), not answering (503), or has
nothing for an app whose pods run (a known gap with the Spin shim on some setups), the app gets a
``MetricsUnavailable`` note instead of samples, so the panel says why rather than drawing zeros;
the note clears when samples come back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from devenv.model import ResourceSample
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.cluster.resources import APP_LABEL, managed_selector
from devenv.targets.cluster.rollout import KubeApis, api_error_text
from devenv.targets.cluster.streams import Backoff, ObserveSettings

log = logging.getLogger(__name__)

METRICS_MISSING = (
    "metrics.k8s.io is not served by this cluster ({detail}): no CPU/memory graphs. "
    "k3s bundles metrics-server unless started with --disable=metrics-server"
)
METRICS_EMPTY = (
    "metrics.k8s.io has no samples for this app's running pods: with the Spin shim, pod metrics are "
    "missing on some setups (runwasi cgroup driver vs the kubelet's; containerd-shim-spin#180)"
)


def _label(obj: dict) -> str:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(APP_LABEL, "")


class MetricsSampler:
    def __init__(
        self,
        store: Store,
        apis: KubeApis,
        namespace: str,
        settings: ObserveSettings,
        stop: threading.Event,
        apps: Callable[[], dict[str, str]],
        running: Callable[[], set[str]],
    ) -> None:
        self.store = store
        self.apis = apis
        self.namespace = namespace
        self.settings = settings
        self._stop = stop
        self._apps = apps  # label value -> app name, the apps being observed
        self._running = running  # label values of apps with a Running pod
        self._notes: dict[str, str] = {}
        self._windows: dict[str, tuple[str, ...]] = {}

    def run(self) -> None:
        s = self.settings
        backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        while not self._stop.is_set():
            delay = s.metrics_interval_s
            try:
                self.sample()
                backoff.reset()
            except ApiException as err:
                if err.status == 404:
                    self._note_all(
                        METRICS_MISSING.format(detail="HTTP 404: the metrics API group is not registered")
                    )
                elif err.status == 503:
                    self._note_all(METRICS_MISSING.format(detail="HTTP 503: metrics-server is not answering"))
                else:
                    self._note_all(f"metrics.k8s.io failed: {api_error_text(err)}")
            except Exception as err:  # noqa: BLE001 - an outage: the pod watch reports it; keep the last note
                delay = min(delay, backoff.next())
                log.debug("metrics sample failed: %s", err)
            self._stop.wait(delay)

    def sample(self) -> None:
        """One look at metrics.k8s.io for every observed app."""
        result = self.apis.custom.list_namespaced_custom_object(
            "metrics.k8s.io",
            "v1beta1",
            self.namespace,
            "pods",
            label_selector=managed_selector(),
            _request_timeout=self.settings.request_timeout_s,
        )
        by_app: dict[str, list[dict]] = {}
        for item in result.get("items") or []:
            by_app.setdefault(_label(item), []).append(item)
        running = self._running()
        for label, app in self._apps().items():
            items = by_app.get(label, [])
            if not items:
                if label in running:
                    self._note(app, METRICS_EMPTY)
                continue
            window = tuple(sorted(f"{i['metadata']['name']}@{i.get('timestamp', '')}" for i in items))
            if self._windows.get(app) == window:
                continue  # metrics-server has not produced a new window yet
            self._windows[app] = window
            usage = [c.get("usage") or {} for i in items for c in i.get("containers") or []]
            cores = sum(float(parse_quantity(u.get("cpu", "0"))) for u in usage)
            memory = sum(int(parse_quantity(u.get("memory", "0"))) for u in usage)
            # One core = 100%, as the local target reports guest CPU.
            sample = ResourceSample(time.time(), app, cores * 100.0, memory, source="metrics.k8s.io")
            self.store.dispatch(a.ResourceSampled(sample))
            self._note(app, "")

    def _note(self, app: str, note: str) -> None:
        if self._notes.get(app) == note:
            return
        self._notes[app] = note
        self.store.dispatch(a.MetricsUnavailable(app=app, reason=note))

    def _note_all(self, note: str) -> None:
        for app in self._apps().values():
            self._note(app, note)
