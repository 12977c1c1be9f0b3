"""Cluster bootstrap against the fake k3d (on PATH, as a subprocess) and the fake API server (real
HTTP, real kubernetes client): the argv k3d gets, idempotence, each missing piece's message, and
rollback of whatever a failed run created."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import pytest
import yaml

from devenv.config import ClusterSettings
from devenv.errors import TargetUnavailable
from devenv.model import StepState, StepStatus
from devenv.store.store import Store
from devenv.targets.cluster.bootstrap import BootstrapOptions, bootstrap_cluster, ping_docker
from devenv.targets.cluster.commands import cluster_create
from devenv.targets.cluster.node_readiness import Polling
from tests.fakes import apiserver
from tests.fakes.apiserver import FakeApiServer
from tests.fakes.k3d import harness
from tests.fakes.k3d.harness import USER_KUBECONFIG, FakeK3d

# Fixtures shared with the other k3d tests (assigned, so pytest finds them in this module).
fake_apiserver = apiserver.fake_apiserver
fake_k3d = harness.fake_k3d
cluster_settings = harness.cluster_settings

IMAGE = "ghcr.io/spinframework/containerd-shim-spin/k3d:v0.24.0"


@pytest.fixture
def settings(cluster_settings: ClusterSettings) -> ClusterSettings:
    assert cluster_settings.name == "wasmdev" and cluster_settings.image == IMAGE  # the published image
    return cluster_settings


def fast(**kw: object) -> BootstrapOptions:
    opts = BootstrapOptions(docker_ping=lambda: None, polling=Polling(timeout=5.0, interval=0.02))
    for k, v in kw.items():
        setattr(opts, k, v)
    return opts


class Steps:
    """Collects every step state, the way the store receives BootstrapStepChanged."""

    def __init__(self) -> None:
        self.seen: list[StepState] = []

    def __call__(self, step: StepState) -> None:
        self.seen.append(step)

    def final(self, key: str) -> StepState:
        return [s for s in self.seen if s.key == key][-1]

    def notes(self, key: str) -> list[str]:
        return [s.detail for s in self.seen if s.key == key and s.detail]


async def test_happy_path_creates_registry_cluster_kubeconfig_and_runtime_class(
    fake_k3d: FakeK3d,
    settings: ClusterSettings,
    fake_apiserver: FakeApiServer,
) -> None:
    store = Store()
    steps = Steps()
    store.subscribe(lambda state, action: steps(action.step))

    code = await cluster_create(settings, store, cli=fake_k3d.cli(settings.kubeconfig), options=fast())

    assert code == 0
    keys = ["docker", "k3d", "ports", "nodeimage", "registry", "cluster", "kubeconfig", "nodes", "runtimeclass"]
    assert [s.key for s in store.state.bootstrap] == keys
    for s in store.state.bootstrap:
        assert s.status is StepStatus.DONE, s
        assert s.started_at is not None and s.finished_at is not None and s.finished_at >= s.started_at

    # exactly what k3d was asked to do
    reg = settings.registry_port
    assert fake_k3d.calls_of("registry", "create") == [
        ["registry", "create", "wasmdev-registry", "--port", f"127.0.0.1:{reg}", "--no-help"]
    ]
    assert fake_k3d.calls_of("cluster", "create") == [
        [
            "cluster",
            "create",
            "wasmdev",
            "--image",
            IMAGE,
            "--port",
            f"{settings.http_port}:80@loadbalancer",
            "--agents",
            "0",
            "--api-port",
            "127.0.0.1:random",
            "--registry-use",
            f"k3d-wasmdev-registry:{reg}",
            "--kubeconfig-update-default=false",
            "--kubeconfig-switch-context=false",
            "--wait",
        ]
    ]
    assert fake_k3d.calls_of("kubeconfig", "write") == [
        [
            "kubeconfig",
            "write",
            "wasmdev",
            "-o",
            str(settings.kubeconfig),
            "--kubeconfig-switch-context=false",
        ]
    ]
    # every single call ran with wasmdev's kubeconfig as KUBECONFIG
    assert fake_k3d.calls() and all(
        c["env"]["KUBECONFIG"] == str(settings.kubeconfig) for c in fake_k3d.calls()
    )

    kubeconfig = yaml.safe_load(settings.kubeconfig.read_text())
    assert [c["name"] for c in kubeconfig["contexts"]] == ["k3d-wasmdev"]
    assert kubeconfig["clusters"][0]["cluster"]["server"] == fake_apiserver.url
    assert fake_k3d.user_kubeconfig.read_text() == USER_KUBECONFIG

    rc = fake_apiserver.cluster.get("runtimeclasses", "", "wasmtime-spin-v2")
    assert rc is not None and rc["handler"] == "spin"
    assert rc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "wasmdev"
    assert "k3d-wasmdev-registry:5000" in store.state.bootstrap[4].detail
    assert store.state.bootstrap[3].detail == f"{IMAGE}: Spin 3.6.3 (shim v0.24.0)"


async def test_second_create_reuses_cluster_and_registry(
    fake_k3d: FakeK3d, settings: ClusterSettings
) -> None:
    cli = fake_k3d.cli(settings.kubeconfig)
    first = await bootstrap_cluster(settings, Steps(), cli=cli, options=fast())
    steps = Steps()
    second = await bootstrap_cluster(settings, steps, cli=cli, options=fast())

    assert first.created_cluster and first.created_registry
    assert not second.created_cluster and not second.created_registry
    assert len(fake_k3d.calls_of("cluster", "create")) == 1
    assert len(fake_k3d.calls_of("registry", "create")) == 1
    assert steps.final("ports").status is StepStatus.SKIPPED
    assert "reusing wasmdev" in steps.final("cluster").detail
    assert second.registry is not None and second.registry.push_host == f"127.0.0.1:{settings.registry_port}"
    assert second.http_port == settings.http_port


async def test_stopped_cluster_is_started_not_recreated(fake_k3d: FakeK3d, settings: ClusterSettings) -> None:
    cli = fake_k3d.cli(settings.kubeconfig)
    await bootstrap_cluster(settings, Steps(), cli=cli, options=fast())
    fake_k3d.edit_state(lambda s: s["clusters"]["wasmdev"].update(running=False))

    await bootstrap_cluster(settings, Steps(), cli=cli, options=fast())

    assert fake_k3d.calls_of("cluster", "start") == [["cluster", "start", "wasmdev", "--wait"]]
    assert len(fake_k3d.calls_of("cluster", "create")) == 1


async def test_missing_k3d_says_how_to_install(fake_k3d: FakeK3d, settings: ClusterSettings) -> None:
    fake_k3d.remove_from_path()
    lines: list[str] = []

    code = await cluster_create(settings, lines.append, cli=fake_k3d.cli(settings.kubeconfig), options=fast())

    assert code == 1
    text = "\n".join(lines)
    assert "k3d is not installed" in text
    assert "https://raw.githubusercontent.com/k3d-io/k3d/main/install.sh" in text
    assert fake_k3d.calls() == []


async def test_old_k3d_is_refused_with_the_version_needed(
    fake_k3d: FakeK3d, settings: ClusterSettings
) -> None:
    fake_k3d.env["FAKE_K3D_VERSION"] = "v5.4.9"
    steps = Steps()

    with pytest.raises(TargetUnavailable) as err:
        await bootstrap_cluster(settings, steps, cli=fake_k3d.cli(settings.kubeconfig), options=fast())

    assert "k3d v5.4.9" in err.value.what and "v5.8.3" in err.value.what and "v0.24.0" in err.value.what
    assert "upgrade k3d" in err.value.fix
    assert steps.final("k3d").status is StepStatus.FAILED
    assert fake_k3d.argvs() == [["version"]]


async def test_docker_down_is_reported_with_the_fix(
    fake_k3d: FakeK3d, settings: ClusterSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real docker SDK against a socket nobody listens on.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    steps = Steps()
    opts = fast(docker_ping=ping_docker)

    with pytest.raises(TargetUnavailable) as err:
        await bootstrap_cluster(settings, steps, cli=fake_k3d.cli(settings.kubeconfig), options=opts)

    assert "Docker engine is not reachable" in err.value.what and "no-docker.sock" in err.value.what
    assert "start Docker" in err.value.fix
    assert steps.final("docker").status is StepStatus.FAILED
    assert steps.final("docker").fix == err.value.fix
    assert fake_k3d.calls() == []


@pytest.mark.docker
def test_docker_ping_succeeds_where_docker_runs() -> None:
    try:
        ping_docker()
    except TargetUnavailable as err:
        pytest.skip(f"no Docker engine here: {err.what}")


async def test_busy_port_is_named_with_the_setting_to_change(
    fake_k3d: FakeK3d, settings: ClusterSettings
) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", settings.http_port))
        busy.listen()
        lines: list[str] = []
        code = await cluster_create(
            settings, lines.append, cli=fake_k3d.cli(settings.kubeconfig), options=fast()
        )

    assert code == 1
    text = "\n".join(lines)
    assert f"port {settings.http_port} (HTTP ingress) is already in use" in text
    assert f"free port {settings.http_port} or choose another with --http-port / [cluster].http_port" in text
    assert fake_k3d.state()["clusters"] == {} and fake_k3d.state()["registries"] == {}


async def test_busy_registry_port(fake_k3d: FakeK3d, settings: ClusterSettings) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", settings.registry_port))
        busy.listen()
        with pytest.raises(TargetUnavailable) as err:
            await bootstrap_cluster(settings, Steps(), cli=fake_k3d.cli(settings.kubeconfig), options=fast())
    assert "--registry-port / [cluster].registry_port" in err.value.fix
    assert fake_k3d.calls_of("registry", "create") == []


async def test_failed_create_rolls_back_the_registry_it_made(
    fake_k3d: FakeK3d, settings: ClusterSettings
) -> None:
    fake_k3d.fail("cluster create", "Failed to pull image 'x': no space left on device")
    steps = Steps()

    with pytest.raises(TargetUnavailable) as err:
        await bootstrap_cluster(settings, steps, cli=fake_k3d.cli(settings.kubeconfig), options=fast())

    failed = steps.final("cluster")
    assert failed.status is StepStatus.FAILED
    assert "no space left on device" in failed.detail  # k3d's ERRO cause, not just its FATA verdict
    assert failed.fix and "docker pull" in failed.fix
    assert err.value.what == failed.detail
    assert steps.final("rollback").status is StepStatus.DONE
    assert "registry k3d-wasmdev-registry" in steps.final("rollback").detail
    assert fake_k3d.calls_of("registry", "delete") == [["registry", "delete", "wasmdev-registry"]]
    assert fake_k3d.calls_of("cluster", "delete") == []  # k3d rolled its own part back already
    assert fake_k3d.state()["registries"] == {} and fake_k3d.state()["clusters"] == {}
    assert not settings.kubeconfig.exists()
    assert fake_k3d.user_kubeconfig.read_text() == USER_KUBECONFIG


async def test_failed_create_keeps_a_registry_that_was_already_there(
    fake_k3d: FakeK3d, settings: ClusterSettings
) -> None:
    await fake_k3d.cli(settings.kubeconfig).create_registry("wasmdev-registry", settings.registry_port)
    fake_k3d.fail("cluster create", "boom")

    with pytest.raises(TargetUnavailable):
        await bootstrap_cluster(settings, Steps(), cli=fake_k3d.cli(settings.kubeconfig), options=fast())

    assert fake_k3d.calls_of("registry", "delete") == []
    assert list(fake_k3d.state()["registries"]) == ["k3d-wasmdev-registry"]


async def test_waits_for_nodes_ready_not_just_k3d(
    fake_k3d: FakeK3d,
    settings: ClusterSettings,
    fake_apiserver: FakeApiServer,
) -> None:
    node = fake_apiserver.cluster.get("nodes", "", "k3d-wasmdev-server-0")
    assert node is not None
    node["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]
    fake_apiserver.cluster.put("nodes", "", node)
    steps = Steps()

    def sink(step: StepState) -> None:
        steps(step)
        # The kubelet turns Ready only after wasmdev has seen it NotReady at least once.
        if step.key == "nodes" and step.detail == "0/1 Ready":
            node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
            fake_apiserver.cluster.put("nodes", "", node)

    await bootstrap_cluster(settings, sink, cli=fake_k3d.cli(settings.kubeconfig), options=fast())

    assert "0/1 Ready" in steps.notes("nodes")
    assert steps.final("nodes").status is StepStatus.DONE
    assert steps.final("nodes").detail == "1/1 Ready"


async def test_nodes_never_ready_rolls_back_everything(
    fake_k3d: FakeK3d,
    settings: ClusterSettings,
    fake_apiserver: FakeApiServer,
) -> None:
    node = fake_apiserver.cluster.get("nodes", "", "k3d-wasmdev-server-0")
    assert node is not None
    node["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    fake_apiserver.cluster.put("nodes", "", node)
    steps = Steps()

    with pytest.raises(TargetUnavailable) as err:
        await bootstrap_cluster(
            settings,
            steps,
            cli=fake_k3d.cli(settings.kubeconfig),
            options=fast(polling=Polling(timeout=0.2, interval=0.02)),
        )

    assert "nodes not Ready" in err.value.what and "k3d-wasmdev-server-0" in err.value.what
    assert steps.final("nodes").status is StepStatus.FAILED
    assert fake_k3d.calls_of("cluster", "delete") == [["cluster", "delete", "wasmdev"]]
    assert fake_k3d.state()["clusters"] == {} and fake_k3d.state()["registries"] == {}


async def test_node_without_spin_runtime_is_explained(
    fake_k3d: FakeK3d,
    settings: ClusterSettings,
    fake_apiserver: FakeApiServer,
) -> None:
    node = fake_apiserver.cluster.get("nodes", "", "k3d-wasmdev-server-0")
    assert node is not None
    node["status"]["runtimeHandlers"] = [{"name": "runc", "features": {}}, {"name": "", "features": {}}]
    fake_apiserver.cluster.put("nodes", "", node)
    steps = Steps()

    with pytest.raises(TargetUnavailable) as err:
        await bootstrap_cluster(settings, steps, cli=fake_k3d.cli(settings.kubeconfig), options=fast())

    assert "no 'spin' runtime" in err.value.what and "containerd-shim-spin" in err.value.what
    assert "--image" in err.value.fix
    assert steps.final("runtimeclass").status is StepStatus.FAILED


async def test_runtime_class_with_wrong_handler_is_not_silently_kept(
    fake_k3d: FakeK3d,
    settings: ClusterSettings,
    fake_apiserver: FakeApiServer,
) -> None:
    fake_apiserver.cluster.put(
        "runtimeclasses",
        "",
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": "wasmtime-spin-v2"},
            "handler": "spin-v2",
        },
    )

    with pytest.raises(TargetUnavailable) as err:
        await bootstrap_cluster(settings, Steps(), cli=fake_k3d.cli(settings.kubeconfig), options=fast())

    assert "handler 'spin-v2'" in err.value.what
    assert "delete runtimeclass wasmtime-spin-v2" in err.value.fix


async def test_cancelled_create_removes_the_half_made_cluster_and_registry(
    fake_k3d: FakeK3d, settings: ClusterSettings
) -> None:
    fake_k3d.env["FAKE_K3D_HANG"] = "cluster create"
    steps = Steps()
    cancelled = asyncio.Event()

    def sink(step: StepState) -> None:
        steps(step)
        if step.key == "cluster" and step.status is StepStatus.RUNNING and not cancelled.is_set():
            cancelled.set()

    task = asyncio.create_task(
        bootstrap_cluster(settings, sink, cli=fake_k3d.cli(settings.kubeconfig), options=fast())
    )
    await cancelled.wait()
    for _ in range(500):  # until k3d got as far as making containers (bounded: never hang CI)
        if "wasmdev" in fake_k3d.state()["clusters"]:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the fake k3d never recorded the cluster")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert steps.final("cluster").status is StepStatus.FAILED
    assert steps.final("rollback").status is StepStatus.DONE
    assert fake_k3d.state()["clusters"] == {} and fake_k3d.state()["registries"] == {}


async def test_registry_recreated_under_an_existing_cluster_is_flagged(
    fake_k3d: FakeK3d, settings: ClusterSettings
) -> None:
    cli = fake_k3d.cli(settings.kubeconfig)
    await bootstrap_cluster(settings, Steps(), cli=cli, options=fast())
    await cli.delete_registry("wasmdev-registry")

    endpoint = await bootstrap_cluster(settings, Steps(), cli=cli, options=fast())

    assert endpoint.created_registry and not endpoint.created_cluster
    assert any("created after cluster wasmdev" in n for n in endpoint.notes)


async def test_stopped_registry_is_started_through_docker(
    fake_k3d: FakeK3d, settings: ClusterSettings
) -> None:
    cli = fake_k3d.cli(settings.kubeconfig)
    await bootstrap_cluster(settings, Steps(), cli=cli, options=fast())
    fake_k3d.edit_state(lambda s: s["registries"]["k3d-wasmdev-registry"].update(running=False))
    started: list[str] = []

    def docker_start(name: str) -> None:  # stands in for `docker start`, on the fake's containers
        started.append(name)
        fake_k3d.edit_state(lambda s: s["registries"][name].update(running=True))

    await bootstrap_cluster(settings, Steps(), cli=cli, options=fast(start_container=docker_start))

    assert started == ["k3d-wasmdev-registry"]
    assert len(fake_k3d.calls_of("registry", "create")) == 1


async def test_another_known_runtime_class_gets_its_own_handler(
    fake_k3d: FakeK3d, settings: ClusterSettings, fake_apiserver: FakeApiServer
) -> None:
    fake_apiserver.cluster.set_runtime_handlers("runc", "spin", "wasmedge")  # a node image with that shim
    wasmedge = dataclasses.replace(settings, runtime_class="wasmedge")
    await bootstrap_cluster(wasmedge, Steps(), cli=fake_k3d.cli(settings.kubeconfig), options=fast())
    rc = fake_apiserver.cluster.get("runtimeclasses", "", "wasmedge")
    assert rc is not None and rc["handler"] == "wasmedge"


async def test_unknown_runtime_class_is_refused_before_anything_is_made(
    fake_k3d: FakeK3d, settings: ClusterSettings
) -> None:
    odd = dataclasses.replace(settings, runtime_class="my-shim")
    with pytest.raises(TargetUnavailable) as err:
        await bootstrap_cluster(odd, Steps(), cli=fake_k3d.cli(settings.kubeconfig), options=fast())
    assert "my-shim" in err.value.what and "wasmtime-spin-v2" in err.value.fix
    assert fake_k3d.calls() == []


async def test_the_readiness_probe_closes_its_api_client(
    fake_k3d: FakeK3d, settings: ClusterSettings, fake_apiserver: FakeApiServer
) -> None:
    from devenv.targets.cluster.node_readiness import KubernetesProbe

    made: list[KubernetesProbe] = []

    def factory(kubeconfig: Path, context: str) -> KubernetesProbe:
        made.append(KubernetesProbe(kubeconfig, context))
        return made[-1]

    code = await cluster_create(
        settings, Steps(), cli=fake_k3d.cli(settings.kubeconfig), options=fast(probe_factory=factory)
    )

    assert code == 0
    [probe] = made
    assert probe._api is None  # used for the two waits, then closed: no pool left behind


def test_starting_the_registry_with_docker_gone_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    import docker

    from devenv.targets.cluster.bootstrap import start_docker_container

    def gone(**_kw: object) -> None:
        raise docker.errors.DockerException("Error while fetching server API version")

    monkeypatch.setattr(docker, "from_env", gone)
    with pytest.raises(TargetUnavailable) as err:
        start_docker_container("k3d-wasmdev-registry")
    assert "could not start the stopped registry container k3d-wasmdev-registry" in err.value.what
    assert "docker start k3d-wasmdev-registry" in err.value.fix


async def test_a_runtime_class_for_a_shim_the_node_image_lacks_is_refused(
    fake_k3d: FakeK3d, settings: ClusterSettings, fake_apiserver: FakeApiServer
) -> None:
    # The default node image carries only the Spin shim; its nodes report runc and spin.
    wasmedge = dataclasses.replace(settings, runtime_class="wasmedge")
    with pytest.raises(TargetUnavailable) as err:
        await bootstrap_cluster(wasmedge, Steps(), cli=fake_k3d.cli(settings.kubeconfig), options=fast())
    assert "no 'wasmedge' runtime" in err.value.what
    assert fake_apiserver.cluster.get("runtimeclasses", "", "wasmedge") is None
