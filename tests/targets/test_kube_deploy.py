"""The kube target against the fake API server, through the real kubernetes client: deploy shape,
rollouts that keep the old version serving, start-up checks, cleanup by label, the --target kube factory."""

from __future__ import annotations

import kubernetes
import pytest

from devenv.errors import TargetUnavailable
from devenv.model import AppStatus, StepStatus
from devenv.store.store import Store
from devenv.targets.base import Target
from devenv.targets.cluster.kube import delete_managed, kube_target_from_settings
from devenv.targets.cluster.resources import APP_LABEL, BUILD_LABEL, MANAGED_BY_LABEL
from devenv.targets.cluster.rollout import KubeApis
from tests.fakes.apiserver import FakeApiServer, PodScript, fake_apiserver_fixture  # noqa: F401 - fixture
from tests.targets.kube_helpers import (
    FakeAppSettings,
    FakeSettings,
    build,
    deploy_like_engine,
    image_of,
    make_target,
    wait_until,
)


@pytest.fixture
def store() -> Store:
    return Store()


async def test_deploy_creates_deployment_service_ingress_with_the_shim_shape(fake_apiserver, store):
    settings = FakeSettings(
        apps={"hello": FakeAppSettings(replicas=2, cpu_limit="250m", memory_limit="96Mi")}
    )
    target = make_target(fake_apiserver, store, settings=settings)
    assert isinstance(target, Target)
    v1 = build("hello", "v1")
    try:
        result = await target.deploy(v1)
    finally:
        await target.close()

    assert result.urls == ("http://hello.localhost:8081/",)
    cluster = fake_apiserver.cluster
    dep = cluster.get("deployments", "default", "hello")
    assert dep is not None
    labels = {MANAGED_BY_LABEL: "wasmdev", APP_LABEL: "hello"}
    assert dep["metadata"]["labels"] == labels
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod_spec = dep["spec"]["template"]["spec"]
    assert pod_spec["runtimeClassName"] == "wasmtime-spin-v2"
    (container,) = pod_spec["containers"]
    assert container["command"] == ["/"]
    assert container["image"] == image_of(v1)  # the in-cluster pull address, not the push one
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "250m", "memory": "96Mi"},
    }
    assert dep["spec"]["template"]["metadata"]["labels"][BUILD_LABEL] == v1.short_digest

    svc = cluster.get("services", "default", "hello")
    assert svc["spec"]["selector"] == labels and svc["spec"]["ports"][0]["port"] == 80
    ing = cluster.get("ingresses", "default", "hello")
    assert ing["metadata"]["labels"] == labels
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "hello.localhost"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "hello", "port": {"number": 80}}
    assert ing["spec"]["ingressClassName"] == "traefik"

    rc = cluster.get("runtimeclasses", "", "wasmtime-spin-v2")
    assert rc is not None and rc["handler"] == "spin"

    # Server-side apply, as wasmdev's field manager, for each of the three objects.
    applies = [r for r in fake_apiserver.requests if r[0] == "PATCH" and "apply-patch" in r[2]]
    assert {r[1].split("?")[0].rsplit("/", 2)[-2] for r in applies} >= {
        "deployments",
        "services",
        "ingresses",
    }
    assert all("fieldManager=wasmdev" in r[1] for r in applies)

    # Both replicas of the build were Ready when deploy returned.
    pods = cluster.pods(selector=f"{BUILD_LABEL}={v1.short_digest}")
    assert len(pods) == 2
    assert all(c["status"] == "True" for p in pods for c in p["status"]["conditions"] if c["type"] == "Ready")
    assert target.packager.calls == [("hello", "localhost:5001")]


async def test_redeploy_waits_for_new_pods_while_old_ones_keep_serving(fake_apiserver, store):
    target = make_target(fake_apiserver, store)
    v1, v2 = build("hello", "v1"), build("hello", "v2")
    cluster = fake_apiserver.cluster
    cluster.script_image(image_of(v2), PodScript(ticks_to_running=4, ticks_to_ready=12))
    try:
        assert await deploy_like_engine(store, target, v1) is None
        (old_pod,) = [p["metadata"]["name"] for p in cluster.pods()]
        assert await deploy_like_engine(store, target, v2) is None
        new_pods = cluster.pods(selector=f"{BUILD_LABEL}={v2.short_digest}")
    finally:
        await target.close()

    # deploy returned only once the new pod was Ready.
    (new_pod,) = new_pods
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in new_pod["status"]["conditions"])
    # The pod history: the old pod was deleted only after the new one became Ready.
    history = cluster.events["pods"]
    ready_rv = min(
        rv
        for rv, kind, obj in history
        if obj["metadata"]["name"] == new_pod["metadata"]["name"]
        and any(c["type"] == "Ready" and c["status"] == "True" for c in obj["status"].get("conditions", []))
    )
    deleted = [rv for rv, kind, obj in history if kind == "DELETED" and obj["metadata"]["name"] == old_pod]
    assert not deleted or deleted[0] > ready_rv
    app = store.state.apps["hello"]
    assert app.status is AppStatus.SERVING and app.serving_digest == v2.digest


async def test_second_app_gets_its_own_host_rule_and_the_same_port(fake_apiserver, store):
    target = make_target(fake_apiserver, store)
    try:
        first = await target.deploy(build("hello", "v1"))
        second = await target.deploy(build("Todo_API", "v1"))
    finally:
        await target.close()
    assert first.urls == ("http://hello.localhost:8081/",)
    assert second.urls == ("http://todo-api.localhost:8081/",)
    ing = fake_apiserver.cluster.get("ingresses", "default", "todo-api")
    assert ing["spec"]["rules"][0]["host"] == "todo-api.localhost"


async def test_start_reports_steps_and_creates_missing_namespace(fake_apiserver, store):
    target = make_target(fake_apiserver, store, namespace="dev")
    try:
        await target.start()
    finally:
        await target.close()
    steps = {s.key: s for s in store.state.bootstrap}
    assert [steps[k].status for k in ("kube-api", "kube-namespace", "kube-runtimeclass")] == [
        StepStatus.DONE
    ] * 3
    assert "v1.35" in steps["kube-api"].detail
    assert steps["kube-namespace"].detail == "created"
    assert fake_apiserver.cluster.get("namespaces", "", "dev") is not None


async def test_start_against_a_dead_api_server_says_where_and_how_to_check(fake_apiserver, store):
    target = make_target(fake_apiserver, store)
    fake_apiserver.stop()
    try:
        with pytest.raises(TargetUnavailable) as info:
            await target.start()
    finally:
        await target.close()
    err = info.value
    assert "cannot reach the Kubernetes API server" in err.what
    assert "context k3d-test" in err.where and fake_apiserver.url in err.where
    assert "kubectl --context k3d-test get nodes" in err.fix
    (failed,) = [s for s in store.state.bootstrap if s.status is StepStatus.FAILED]
    assert failed.key == "kube-api"


async def test_existing_runtime_class_is_left_alone(fake_apiserver, store):
    cluster = fake_apiserver.cluster
    cluster.put("runtimeclasses", "", {"metadata": {"name": "wasmtime-spin-v2"}, "handler": "spin-v2"})
    target = make_target(fake_apiserver, store)
    try:
        await target.start()
    finally:
        await target.close()
    assert cluster.get("runtimeclasses", "", "wasmtime-spin-v2")["handler"] == "spin-v2"
    assert [s.detail for s in store.state.bootstrap if s.key == "kube-runtimeclass"] == ["handler spin-v2"]


async def test_cleanup_removes_only_wasmdev_labelled_objects(fake_apiserver, store):
    api = fake_apiserver.api_client()
    apps_api = kubernetes.client.AppsV1Api(api)
    core = kubernetes.client.CoreV1Api(api)
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "someone-elses", "labels": {"app": "someone-elses"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "someone-elses"}},
            "template": {
                "metadata": {"labels": {"app": "someone-elses"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }
    apps_api.create_namespaced_deployment("default", foreign)
    core.create_namespaced_service(
        "default", {"metadata": {"name": "hello-docs"}, "spec": {"ports": [{"port": 80}]}}
    )
    target = make_target(fake_apiserver, store)
    try:
        await target.deploy(build("hello", "v1"))
        await target.deploy(build("todo", "v1"))
        await target.remove("hello")
        cluster = fake_apiserver.cluster
        assert cluster.get("deployments", "default", "hello") is None
        assert cluster.get("services", "default", "hello") is None
        assert cluster.get("ingresses", "default", "hello") is None
        assert cluster.get("deployments", "default", "todo") is not None

        deleted = delete_managed(KubeApis(api), "default")
    finally:
        await target.close()
    assert sorted(deleted) == ["Deployment/todo", "Ingress/todo", "Service/todo"]
    assert cluster.get("deployments", "default", "someone-elses") is not None
    assert cluster.get("services", "default", "hello-docs") is not None
    wait_until(lambda: not cluster.pods(selector="wasmdev.dev/app=todo"), what="todo's pods to go")
    assert cluster.pods(selector="app=someone-elses")


def test_factory_builds_a_target_from_a_kubeconfig_context(fake_apiserver, store, tmp_path):
    from devenv.config import KubeSettings, Settings

    kubeconfig = fake_apiserver.write_kubeconfig(tmp_path / "kubeconfig", context="team-k3s")
    settings = Settings(
        root=tmp_path,
        target="kube",
        kube=KubeSettings(context="team-k3s", kubeconfig=kubeconfig, registry="registry.team:5000/wasm"),
    )
    target = kube_target_from_settings(store, settings)
    assert target.apis.host == fake_apiserver.url
    assert target.context == "team-k3s"
    assert target.push_registry == "registry.team:5000/wasm"
    assert "context team-k3s" in target.where

    missing = Settings(
        root=tmp_path, kube=KubeSettings(context="nope", kubeconfig=kubeconfig, registry="r/x")
    )
    with pytest.raises(TargetUnavailable) as info:
        kube_target_from_settings(store, missing)
    assert "nope" in info.value.what and "team-k3s" in info.value.fix

    with pytest.raises(TargetUnavailable) as info:
        kube_target_from_settings(store, Settings(root=tmp_path, kube=KubeSettings(kubeconfig=kubeconfig)))
    assert "--registry" in info.value.fix


async def test_bearer_token_is_sent(store):
    server = FakeApiServer(token="s3cret").start()
    try:
        target = make_target(server, store)
        try:
            await target.deploy(build("hello", "v1"))
        finally:
            await target.close()
        assert server.cluster.get("deployments", "default", "hello") is not None
        assert not [r for r in server.requests if r[0] == "GET" and r[1].startswith("/version")]
    finally:
        server.close()


async def test_a_trigger_the_shim_cannot_run_is_refused_before_pushing(fake_apiserver, store):
    from dataclasses import replace

    from devenv.targets.base import UnsupportedApp

    target = make_target(fake_apiserver, store)
    v1 = build("cron-job", "v1")
    v1 = replace(v1, spec=replace(v1.spec, other_triggers=("cron",)))
    try:
        with pytest.raises(UnsupportedApp) as info:
            await target.deploy(v1)
    finally:
        await target.close()
    assert "declares cron" in info.value.what and str(v1.spec.manifest_path) == info.value.where
    assert target.packager.calls == []
    assert fake_apiserver.cluster.get("deployments", "default", "cron-job") is None


async def test_deploy_leaves_the_event_loop_free(fake_apiserver, store):
    import asyncio

    target = make_target(fake_apiserver, store)
    v1 = build("hello", "v1")
    fake_apiserver.cluster.script_image(image_of(v1), PodScript(ticks_to_running=5, ticks_to_ready=15))
    beats = 0
    done = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal beats
        while not done.is_set():
            beats += 1
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(heartbeat())
    try:
        await target.deploy(v1)  # the rollout alone waits 15 controller ticks for readiness
    finally:
        done.set()
        await ticker
        await target.close()
    # Every kubernetes call ran in a worker thread: the loop kept beating while deploy waited.
    assert beats >= 5


async def test_close_shuts_its_own_api_client_off_the_event_loop(fake_apiserver, store):
    import threading

    target = make_target(fake_apiserver, store, owns_client=True)
    client = target.apis.client
    closed_on: list[threading.Thread] = []
    real_close = client.close

    def close() -> None:
        closed_on.append(threading.current_thread())
        real_close()

    client.close = close
    await target.close()
    # ApiClient.close joins its worker pool: blocking, so it belongs in a worker thread.
    assert closed_on and closed_on[0] is not threading.main_thread()
