"""Pods, pod logs and metrics flowing from the (fake) cluster into the store, and the observer
surviving the API server going away and coming back."""

from __future__ import annotations

import threading

import pytest

from devenv.model import PodState
from devenv.store.store import Store
from devenv.targets.cluster.observe import METRICS_EMPTY, parse_log_timestamp, pod_state
from devenv.targets.cluster.resources import BUILD_LABEL
from tests.fakes.apiserver import PodFailure, PodScript, fake_apiserver_fixture  # noqa: F401 - fixture
from tests.targets.kube_helpers import (
    build,
    deploy_like_engine,
    image_of,
    make_target,
    observer_threads,
    pod_lines,
    system_lines,
    wait_until,
)


@pytest.fixture
def store() -> Store:
    return Store()


def _ready_pods(store: Store, app: str) -> tuple[PodState, ...]:
    return tuple(p for p in store.state.apps[app].pods if p.ready)


async def test_pods_and_their_logs_flow_into_the_store_and_follow_replaced_pods(fake_apiserver, store):
    target = make_target(fake_apiserver, store)
    cluster = fake_apiserver.cluster
    v1, v2 = build("hello", "v1"), build("hello", "v2")
    try:
        assert await deploy_like_engine(store, target, v1) is None
        wait_until(lambda: len(_ready_pods(store, "hello")) == 1, what="v1's pod in the store")
        (pod,) = store.state.apps["hello"].pods
        assert pod.phase == "Running" and pod.image == image_of(v1) and pod.restarts == 0

        wait_until(lambda: "Serving http://0.0.0.0:80" in pod_lines(store, "hello"), what="the startup log")
        cluster.append_log(pod.name, "GET /hello 200")  # written while we follow
        wait_until(lambda: "GET /hello 200" in pod_lines(store, "hello"), what="a line appended live")
        lines = [ln for ln in store.logs.tail(1000) if ln.text == "GET /hello 200"]
        assert len(lines) == 1 and lines[0].component == pod.name

        assert await deploy_like_engine(store, target, v2) is None
        new_pod = cluster.pods(selector=f"{BUILD_LABEL}={v2.short_digest}")[0]["metadata"]["name"]
        wait_until(
            lambda: [p.name for p in store.state.apps["hello"].pods] == [new_pod],
            what="the store to show only the replacing pod",
        )
        cluster.append_log(new_pod, "hello from v2")
        wait_until(lambda: "hello from v2" in pod_lines(store, "hello"), what="the new pod's logs")
    finally:
        await target.close()
    # Each line once, though the old pod's stream ended and a new one was attached.
    assert pod_lines(store, "hello").count("GET /hello 200") == 1


async def test_crash_looping_pod_shows_restarts_and_reason(fake_apiserver, store):
    target = make_target(fake_apiserver, store)
    v1 = build("hello", "v1")
    fake_apiserver.cluster.script_image(image_of(v1), PodScript(failure=PodFailure.CRASH_LOOP))
    try:
        await deploy_like_engine(store, target, v1)
        wait_until(
            lambda: any(p.restarts >= 2 for p in store.state.apps["hello"].pods),
            what="restarts in the store",
        )
        # The BackOff event comes on the event watch, a thread of its own that may lag the pod
        # watch: wait for its line before close() cuts that watch.
        wait_until(
            lambda: any("Back-off restarting failed container" in t for t in system_lines(store, "hello")),
            what="the BackOff event's line",
        )
    finally:
        await target.close()
    pod = store.state.apps["hello"].pods[0]
    assert pod.reason == "CrashLoopBackOff" and not pod.ready


async def test_warning_events_reach_the_pod_state_and_the_log(fake_apiserver, store):
    target = make_target(fake_apiserver, store)
    v1 = build("hello", "v1")
    fake_apiserver.cluster.script_image(image_of(v1), PodScript(failure=PodFailure.NO_RUNTIME))
    try:
        await deploy_like_engine(store, target, v1)
        wait_until(
            lambda: any("no runtime for" in p.message for p in store.state.apps["hello"].pods),
            what="the sandbox failure on the pod",
        )
        # The event's line is dispatched after the pod's message, on the event watch's thread.
        wait_until(
            lambda: any('no runtime for "spin" is configured' in t for t in system_lines(store, "hello")),
            what="the sandbox failure's line",
        )
    finally:
        await target.close()


async def test_metrics_flow_as_samples_from_metrics_k8s_io(fake_apiserver, store):
    target = make_target(fake_apiserver, store)
    cluster = fake_apiserver.cluster
    try:
        await deploy_like_engine(store, target, build("hello", "v1"))
        (pod,) = cluster.pods()
        cluster.pod_usage[pod["metadata"]["name"]] = ("250m", "20Mi")
        wait_until(
            lambda: any(s.cpu_percent == pytest.approx(25.0) for s in store.metrics.samples("hello")),
            what="a sample with the pod's usage",
        )
    finally:
        await target.close()
    sample = [s for s in store.metrics.samples("hello") if s.cpu_percent == pytest.approx(25.0)][-1]
    assert sample.source == "metrics.k8s.io"
    assert sample.memory_bytes == 20 * 1024 * 1024
    assert store.state.apps["hello"].metrics_note == ""


@pytest.mark.parametrize(
    ("mode", "fragment"),
    [
        ("missing", "not served by this cluster"),
        ("unavailable", "metrics-server is not answering"),
        ("empty", "no samples"),
    ],
)
async def test_missing_metrics_are_a_note_not_zeros(fake_apiserver, store, mode, fragment):
    fake_apiserver.cluster.metrics_mode = mode
    target = make_target(fake_apiserver, store)
    try:
        await deploy_like_engine(store, target, build("hello", "v1"))
        wait_until(lambda: fragment in store.state.apps["hello"].metrics_note, what="the metrics note")
        assert store.metrics.samples("hello") == []

        # When metrics-server comes back, samples flow and the note clears.
        fake_apiserver.cluster.metrics_mode = "values"
        wait_until(lambda: store.metrics.samples("hello") != [], what="samples after metrics return")
        wait_until(lambda: store.state.apps["hello"].metrics_note == "", what="the note to clear")
    finally:
        await target.close()
    if mode == "empty":
        assert "containerd-shim-spin#180" in METRICS_EMPTY


async def test_observer_survives_the_api_server_going_away_and_coming_back(fake_apiserver, store):
    target = make_target(fake_apiserver, store)
    cluster = fake_apiserver.cluster
    v1, v2 = build("hello", "v1"), build("hello", "v2")
    try:
        assert await deploy_like_engine(store, target, v1) is None
        (pod,) = [p["metadata"]["name"] for p in cluster.pods()]
        cluster.append_log(pod, "before the outage")
        wait_until(lambda: "before the outage" in pod_lines(store, "hello"), what="a line before the outage")

        fake_apiserver.stop()
        wait_until(
            lambda: any("lost the API server" in t for t in system_lines(store, "hello")),
            what="the outage to be reported",
        )
        cluster.append_log(pod, "during the outage")  # the node keeps logging; the API is just away
        fake_apiserver.start()

        wait_until(
            lambda: any("reconnected to the API server" in t for t in system_lines(store, "hello")),
            what="the reconnect",
        )
        wait_until(
            lambda: "during the outage" in pod_lines(store, "hello"), what="lines written during the outage"
        )
        cluster.append_log(pod, "after the outage")
        wait_until(lambda: "after the outage" in pod_lines(store, "hello"), what="a line after the outage")

        # The pod watch works again: a new rollout shows up in the store.
        assert await deploy_like_engine(store, target, v2) is None
        wait_until(
            lambda: [p.image for p in store.state.apps["hello"].pods] == [image_of(v2)],
            what="the v2 pod after reconnecting",
        )
        assert len(observer_threads()) == 3  # pods, events, metrics: all still running
    finally:
        await target.close()
    assert pod_lines(store, "hello").count("before the outage") == 1  # reattached without repeats
    assert sum("lost the API server" in t for t in system_lines(store, "hello")) == 1  # once per outage


async def test_close_stops_every_observer_thread(fake_apiserver, store):
    target = make_target(fake_apiserver, store)
    await deploy_like_engine(store, target, build("hello", "v1"))
    wait_until(lambda: len(observer_threads()) == 3, what="the observer threads")
    await target.close()
    wait_until(lambda: observer_threads() == [], what="the observer threads to stop")


def test_log_timestamps_compare_across_precisions():
    early, t1 = parse_log_timestamp("2026-01-02T03:04:05.5Z")
    late, t2 = parse_log_timestamp("2026-01-02T03:04:05.123456789Z")
    assert late < early and t2 < t1  # .123456789 is before .5, whatever the digits written


def test_pod_state_prefers_the_container_reason_and_counts_restarts():
    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "spin", "image": "r:5000/hello:b-1"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {
                    "name": "spin",
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                }
            ],
        },
    }
    state = pod_state(pod)
    assert (state.reason, state.message, state.restarts, state.ready) == (
        "CrashLoopBackOff",
        "back-off 40s",
        3,
        False,
    )


def test_a_stream_opened_while_closing_is_cut_at_once() -> None:
    from devenv.targets.cluster.streams import OpenStreams

    streams = OpenStreams()

    class Blocking:
        """A watch response that would block for the watch's whole timeout unless shut down."""

        shut = False

        def stream(self, amt=None, decode_content=False):  # noqa: ANN001, ANN202 - urllib3's shape
            if not self.shut:
                raise AssertionError("read a stream that close() should have cut")
            return iter(())

        def shutdown(self) -> None:
            self.shut = True

        def close(self) -> None:
            self.shut = True

        def release_conn(self) -> None:
            pass

    resp = Blocking()

    def open_while_closing() -> Blocking:
        streams.abort_all()  # close() runs while the request is on its way
        return resp

    assert list(streams.lines(open_while_closing)) == []
    assert resp.shut


async def test_a_compacted_resource_version_relists_without_calling_it_an_outage(fake_apiserver, store):
    import dataclasses

    from tests.targets.kube_helpers import FAST_OBSERVE

    cluster = fake_apiserver.cluster
    observe = dataclasses.replace(FAST_OBSERVE, watch_timeout_s=1)
    target = make_target(fake_apiserver, store, observe=observe)
    try:
        assert await deploy_like_engine(store, target, build("hello", "v1")) is None
        wait_until(lambda: len(_ready_pods(store, "hello")) == 1, what="v1's pod in the store")
        relists = len(
            fake_apiserver.requests_matching("GET", "/api/v1/namespaces/default/pods?labelSelector")
        )
        # Pods wasmdev does not watch churn past the server's event window; the observer's version
        # (the last event it saw) is compacted away, so its next watch opens with an ERROR 410.
        cluster.EVENT_WINDOW = 3
        for i in range(10):
            cluster.put("pods", "default", {"metadata": {"name": f"other-{i}", "labels": {"app": "other"}}})
        wait_until(
            lambda: (
                len(fake_apiserver.requests_matching("GET", "/api/v1/namespaces/default/pods?labelSelector"))
                > relists
            ),
            timeout=5.0,
            what="the observer to list again after 410 Expired",
        )
        cluster.append_log(store.state.apps["hello"].pods[0].name, "still followed")
        wait_until(lambda: "still followed" in pod_lines(store, "hello"), what="logs after the relist")
    finally:
        await target.close()
    assert not [t for t in system_lines(store, "hello") if "lost the API server" in t]


async def test_replaced_pods_show_as_terminating_until_they_are_gone(fake_apiserver, store):
    cluster = fake_apiserver.cluster
    cluster.termination_ticks = 50  # ~1 s of graceful shutdown, long enough to be seen
    target = make_target(fake_apiserver, store)
    try:
        assert await deploy_like_engine(store, target, build("hello", "v1")) is None
        wait_until(lambda: len(_ready_pods(store, "hello")) == 1, what="v1's pod in the store")
        (old,) = store.state.apps["hello"].pods

        def old_state() -> PodState | None:
            return next((p for p in store.state.apps["hello"].pods if p.name == old.name), None)

        # Terminating lasts ~1 s: record every state the store goes through rather than hope a
        # poll lands in that window on a loaded machine.
        shown_terminating = threading.Event()

        def watch(_state: object, _action: object) -> None:
            if (p := old_state()) is not None and p.reason == "Terminating" and not p.ready:
                shown_terminating.set()

        unsubscribe = store.subscribe(watch)
        try:
            assert await deploy_like_engine(store, target, build("hello", "v2")) is None
            wait_until(lambda: old_state() is None, what="the replaced pod to be gone")
        finally:
            unsubscribe()
        assert shown_terminating.is_set(), "the replaced pod never showed as Terminating"
        assert [p.ready for p in store.state.apps["hello"].pods] == [True]
    finally:
        await target.close()
