"""Rollouts that fail: each kind becomes a DeployError naming the cause and the fix, the previous
version keeps serving (in the cluster and in the store), and the broken pods are rolled back."""

from __future__ import annotations

import pytest

from devenv.model import AppStatus
from devenv.store.store import Store
from devenv.targets.cluster.failures import diagnose
from devenv.targets.cluster.resources import BUILD_LABEL
from tests.fakes.apiserver import PodFailure, PodScript, fake_apiserver_fixture  # noqa: F401 - fixture
from tests.targets.kube_helpers import build, deploy_like_engine, image_of, make_target, wait_until

CASES = [
    pytest.param(
        PodFailure.IMAGE_PULL,
        [
            "ImagePull",
            "server gave HTTP response to HTTPS client",
            "no mirror entry for 'wasmdev-registry:5000'",
        ],
        "REGISTRY-NAME:5000",
        id="image-pull-over-https",
    ),
    pytest.param(
        PodFailure.CRASH_LOOP,
        [
            "CrashLoopBackOff",
            "exit code 137",
            "Spin app failed to start",
            "logs:",
            "Serving http://0.0.0.0:80",
        ],
        "local target",
        id="crash-loop-137",
    ),
    pytest.param(
        PodFailure.NO_RUNTIME,
        ["NoRuntimeHandler", 'no runtime for "spin" is configured', "lacks containerd-shim-spin"],
        "containerd-shim-spin/k3d:v0.24.0",
        id="no-runtime-handler",
    ),
    pytest.param(
        PodFailure.UNSCHEDULABLE,
        ["Unschedulable", "didn't match Pod's node affinity/selector", "nodeSelector"],
        "spin-enabled=true",
        id="unschedulable",
    ),
]


@pytest.mark.parametrize(("failure", "in_what", "in_fix"), CASES)
async def test_failed_rollout_names_the_cause_and_the_old_version_keeps_serving(
    fake_apiserver, failure, in_what, in_fix
):
    store = Store()
    target = make_target(fake_apiserver, store)
    cluster = fake_apiserver.cluster
    v1, v2 = build("hello", "v1"), build("hello", "v2")
    cluster.script_image(image_of(v2), PodScript(failure=failure))
    try:
        assert await deploy_like_engine(store, target, v1) is None
        err = await deploy_like_engine(store, target, v2)
        assert err is not None
        text = str(err)
        for fragment in in_what:
            assert fragment in err.what, (fragment, text)
        assert in_fix in err.fix, text
        assert f"previous version ({v1.short_digest}) keeps serving" in err.what
        assert "context k3d-test" in err.where and "namespace default" in err.where

        # The store: still serving v1, degraded, with the error; the pod list shows v1 Ready.
        app = store.state.apps["hello"]
        assert app.status is AppStatus.DEGRADED
        assert app.serving_digest == v1.digest
        assert in_what[0] in app.error

        def v1_only_and_ready() -> bool:
            pods = store.state.apps["hello"].pods
            return bool(pods) and all(p.image == image_of(v1) and p.ready for p in pods)

        # The Deployment is back on v1, so the broken pods go and only the old ones remain.
        wait_until(v1_only_and_ready, what="the store to show only v1's Ready pods")
        dep = cluster.get("deployments", "default", "hello")
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == image_of(v1)
        assert not cluster.pods(selector=f"{BUILD_LABEL}={v2.short_digest}")
    finally:
        await target.close()


async def test_first_deploy_failing_says_nothing_else_is_serving(fake_apiserver):
    store = Store()
    target = make_target(fake_apiserver, store)
    v1 = build("hello", "v1")
    fake_apiserver.cluster.script_image(image_of(v1), PodScript(failure=PodFailure.IMAGE_PULL))
    try:
        err = await deploy_like_engine(store, target, v1)
    finally:
        await target.close()
    assert err is not None and "no earlier version of this app was running" in err.what
    assert store.state.apps["hello"].status is AppStatus.FAILED
    # Nothing to roll back to: the failing pods stay, visible, for the user to inspect.
    assert fake_apiserver.cluster.pods(selector=f"{BUILD_LABEL}={v1.short_digest}")


async def test_a_runtime_class_whose_handler_the_node_lacks_fails_the_rollout(fake_apiserver):
    # An existing class wasmdev leaves alone, but with SpinKube's old handler name: containerd on
    # the node registered "spin", so the sandbox cannot be made (no script needed: the node says so).
    cluster = fake_apiserver.cluster
    cluster.put("runtimeclasses", "", {"metadata": {"name": "wasmtime-spin-v2"}, "handler": "spin-v2"})
    store = Store()
    target = make_target(fake_apiserver, store)
    try:
        err = await deploy_like_engine(store, target, build("hello", "v1"))
    finally:
        await target.close()
    assert err is not None
    assert 'no runtime for "spin-v2" is configured' in err.what and "NoRuntimeHandler" in err.what


async def test_a_pod_that_never_gets_ready_times_out_with_its_state(fake_apiserver):
    from dataclasses import replace

    from tests.targets.kube_helpers import FAST_ROLLOUT

    store = Store()
    # The pod must be seen Running (3 fake ticks, ~60 ms) before the rollout gives up: 0.3 s was
    # too close on a loaded machine, where the error then showed it still Pending.
    target = make_target(fake_apiserver, store, rollout=replace(FAST_ROLLOUT, timeout_s=2.0))
    v1 = build("hello", "v1")
    fake_apiserver.cluster.script_image(image_of(v1), PodScript(ticks_to_ready=10_000))
    try:
        err = await deploy_like_engine(store, target, v1)
    finally:
        await target.close()
    assert err is not None
    assert "was not Ready in time" in err.what and "Running" in err.what


def test_pull_from_localhost_inside_a_pod_is_explained():
    pod = {
        "metadata": {"name": "hello-1"},
        "status": {
            "containerStatuses": [
                {
                    "name": "spin",
                    "image": "localhost:5001/hello:b-1",
                    "state": {"waiting": {"reason": "ErrImagePull", "message": "x"}},
                }
            ]
        },
    }
    events = [
        {
            "type": "Warning",
            "reason": "Failed",
            "message": 'Failed to pull image "localhost:5001/hello:b-1": failed to do request: '
            'Head "http://localhost:5001/v2/hello/manifests/b-1": dial tcp 127.0.0.1:5001: connect: connection refused',
        }
    ]
    failure = diagnose(pod, events)
    assert failure is not None and failure.reason == "ErrImagePull"
    assert "'localhost' inside a pod is the node itself" in failure.cause
    assert failure.events and "connection refused" in failure.events[0]


def test_https_pull_fix_does_not_rule_out_the_registry_name_wasmdev_uses():
    image = "k3d-wasmdev-registry:5001/hello:b-1"  # the host port instead of a mirrored name
    pod = {
        "metadata": {"name": "hello-1"},
        "status": {
            "containerStatuses": [
                {"name": "spin", "image": image, "state": {"waiting": {"reason": "ErrImagePull"}}}
            ]
        },
    }
    message = f'Failed to pull image "{image}": http: server gave HTTP response to HTTPS client'
    failure = diagnose(pod, [{"type": "Warning", "reason": "Failed", "message": message}])
    assert failure is not None
    # `k3d registry create NAME` (wasmdev's way) names the container, and so the mirror, k3d-NAME.
    assert "not 'k3d-NAME'" not in failure.fix
    assert "k3d-NAME for `k3d registry create NAME`" in failure.fix


def test_a_pending_pod_is_not_a_failure_until_scheduling_is_stuck():
    pod = {
        "metadata": {"name": "hello-1"},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]},
    }
    events = [{"type": "Warning", "reason": "FailedScheduling", "message": "0/1 nodes are available"}]
    assert diagnose(pod, events) is None
    stuck = diagnose(pod, events, scheduling_stuck=True)
    assert stuck is not None and stuck.reason == "Unschedulable"


def _available(fake_apiserver, name: str) -> int:
    status = fake_apiserver.cluster.get("deployments", "default", name).get("status") or {}
    return min(int(status.get(k) or 0) for k in ("updatedReplicas", "availableReplicas", "replicas"))


async def test_a_new_session_rolls_back_to_what_an_earlier_one_left_serving(fake_apiserver):
    v1, v2 = build("hello", "v1"), build("hello", "v2")
    earlier = make_target(fake_apiserver, Store())
    try:
        await earlier.deploy(v1)
    finally:
        await earlier.close()
    # The deploy returns once v1's pod is Ready; the controller reports the Deployment available
    # a tick later. "Left serving" means settled, as a session started seconds later finds it.
    wait_until(lambda: _available(fake_apiserver, "hello") == 1, what="v1's Deployment to settle")

    store = Store()
    target = make_target(fake_apiserver, store)  # knows nothing of v1
    fake_apiserver.cluster.script_image(image_of(v2), PodScript(failure=PodFailure.CRASH_LOOP))
    try:
        err = await deploy_like_engine(store, target, v2)
    finally:
        await target.close()
    assert err is not None and f"previous version ({v1.short_digest}) keeps serving" in err.what
    dep = fake_apiserver.cluster.get("deployments", "default", "hello")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == image_of(v1)


async def test_rollout_rides_out_an_api_server_restart(fake_apiserver):
    import asyncio
    import threading

    store = Store()
    target = make_target(fake_apiserver, store)
    cluster = fake_apiserver.cluster
    v1, v2 = build("hello", "v1"), build("hello", "v2")
    cluster.script_image(image_of(v2), PodScript(ticks_to_running=5, ticks_to_ready=25))

    def restart_when_v2_pods_exist() -> None:
        wait_until(lambda: bool(cluster.pods(selector=f"{BUILD_LABEL}={v2.short_digest}")), what="v2's pod")
        fake_apiserver.stop()
        threading.Event().wait(0.3)
        fake_apiserver.start()

    try:
        assert await deploy_like_engine(store, target, v1) is None
        restarter = asyncio.create_task(asyncio.to_thread(restart_when_v2_pods_exist))
        err = await deploy_like_engine(store, target, v2)
        await restarter
    finally:
        await target.close()
    assert err is None
    assert store.state.apps["hello"].serving_digest == v2.digest


async def test_pods_refused_at_admission_name_the_missing_runtime_class(fake_apiserver):
    import kubernetes

    store = Store()
    target = make_target(fake_apiserver, store)
    v1, v2 = build("hello", "v1"), build("hello", "v2")
    try:
        assert await deploy_like_engine(store, target, v1) is None
        kubernetes.client.NodeV1Api(fake_apiserver.api_client()).delete_runtime_class("wasmtime-spin-v2")
        err = await deploy_like_engine(store, target, v2)
    finally:
        await target.close()
    assert err is not None
    assert (
        'FailedCreate: pods "hello-' in err.what and 'RuntimeClass "wasmtime-spin-v2" not found' in err.what
    )
    assert "kubectl get runtimeclass" in err.fix
    assert f"previous version ({v1.short_digest}) keeps serving" in err.what
