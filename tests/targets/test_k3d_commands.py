"""`wasmdev cluster delete` and `status` against the fake k3d and the fake API server, and the
parsing of what k3d prints (JSON shapes, version line, coloured FATA/ERRO lines)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from devenv.config import ClusterSettings
from devenv.targets.cluster.bootstrap import BootstrapOptions
from devenv.targets.cluster.commands import cluster_create, cluster_delete, cluster_status
from devenv.targets.cluster.k3d import K3dResult, parse_cluster, parse_registry, parse_version
from devenv.targets.cluster.node_readiness import Polling
from devenv.targets.cluster.resources import app_labels
from tests.fakes import apiserver
from tests.fakes.apiserver import FakeApiServer
from tests.fakes.k3d import harness
from tests.fakes.k3d.harness import USER_KUBECONFIG, FakeK3d

fake_apiserver = apiserver.fake_apiserver
fake_k3d = harness.fake_k3d
cluster_settings = harness.cluster_settings


FAST = BootstrapOptions(docker_ping=lambda: None, polling=Polling(timeout=5.0, interval=0.02))


async def create(fake: FakeK3d, settings: ClusterSettings) -> None:
    lines: list[str] = []
    code = await cluster_create(settings, lines.append, cli=fake.cli(settings.kubeconfig), options=FAST)
    assert code == 0, "\n".join(lines)


async def run_command(command: Any, fake: FakeK3d, settings: ClusterSettings) -> tuple[int, list[str]]:
    """``cluster_delete`` or ``cluster_status`` against the fake k3d (no Docker ping); code and lines."""
    lines: list[str] = []
    code = await command(settings, lines.append, cli=fake.cli(settings.kubeconfig), docker_ping=lambda: None)
    return code, lines


async def test_create_prints_steps_and_how_to_use_the_cluster(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings
) -> None:
    lines: list[str] = []
    code = await cluster_create(
        cluster_settings, lines.append, cli=fake_k3d.cli(cluster_settings.kubeconfig), options=FAST
    )
    text = "\n".join(lines)

    assert code == 0
    for title in ("Docker engine", "k3d CLI", "Host ports", "Image registry", "k3d cluster", "Nodes Ready"):
        assert any(line.startswith("  ok") and title in line for line in lines), (title, text)
    assert f"kubectl --kubeconfig {cluster_settings.kubeconfig} get pods -A" in text
    assert f"http://<app>.localhost:{cluster_settings.http_port}/" in text
    assert "pods pull from k3d-wasmdev-registry:5000" in text


async def test_delete_removes_cluster_registry_and_kubeconfig(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings
) -> None:
    await create(fake_k3d, cluster_settings)
    assert cluster_settings.kubeconfig.exists()

    code, lines = await run_command(cluster_delete, fake_k3d, cluster_settings)

    assert code == 0
    assert fake_k3d.state()["clusters"] == {} and fake_k3d.state()["registries"] == {}
    assert fake_k3d.calls_of("cluster", "delete") == [["cluster", "delete", "wasmdev"]]
    assert fake_k3d.calls_of("registry", "delete") == [["registry", "delete", "k3d-wasmdev-registry"]]
    assert not cluster_settings.kubeconfig.exists()
    # k3d rewrote the kubeconfig KUBECONFIG named (ours), never the user's
    assert all(c["env"]["KUBECONFIG"] == str(cluster_settings.kubeconfig) for c in fake_k3d.calls())
    assert fake_k3d.user_kubeconfig.read_text() == USER_KUBECONFIG
    assert lines == [
        "deleted cluster wasmdev",
        "deleted registry k3d-wasmdev-registry",
        f"removed {cluster_settings.kubeconfig}",
    ]


async def test_delete_of_nothing_succeeds_and_says_so(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings
) -> None:
    code, lines = await run_command(cluster_delete, fake_k3d, cluster_settings)
    assert code == 0
    assert lines == ["no cluster wasmdev"]
    assert fake_k3d.calls_of("registry", "delete") == []


async def test_delete_keeps_a_kubeconfig_shared_with_other_clusters(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings
) -> None:
    cluster_settings.kubeconfig.parent.mkdir(parents=True)
    cluster_settings.kubeconfig.write_text(USER_KUBECONFIG)
    await create(fake_k3d, cluster_settings)
    merged = yaml.safe_load(cluster_settings.kubeconfig.read_text())
    assert {c["name"] for c in merged["contexts"]} == {"work", "k3d-wasmdev"}
    assert merged["current-context"] == "work"  # merged without switching the file's context

    await run_command(cluster_delete, fake_k3d, cluster_settings)

    kept = yaml.safe_load(cluster_settings.kubeconfig.read_text())
    assert [c["name"] for c in kept["contexts"]] == ["work"]
    assert kept["current-context"] == "work"


async def test_status_lists_nodes_runtime_classes_registry_and_apps(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, fake_apiserver: FakeApiServer
) -> None:
    await create(fake_k3d, cluster_settings)
    image = "k3d-wasmdev-registry:5000/hello:0123456789abcdef"
    fake_apiserver.cluster.put(
        "deployments",
        "default",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "hello", "labels": app_labels("hello")},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": app_labels("hello")},
                "template": {
                    "metadata": {"labels": app_labels("hello")},
                    "spec": {"containers": [{"name": "spin", "image": image}]},
                },
            },
        },
    )
    fake_apiserver.cluster.put(  # not wasmdev's: must not be listed
        "deployments",
        "default",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "someone-elses", "labels": {"app": "x"}},
            "spec": {
                "selector": {"matchLabels": {"app": "x"}},
                "template": {
                    "metadata": {"labels": {"app": "x"}},
                    "spec": {"containers": [{"name": "x", "image": "nginx:1"}]},
                },
            },
        },
    )

    code, lines = await run_command(cluster_status, fake_k3d, cluster_settings)
    text = "\n".join(lines)

    assert code == 0, text
    assert f"wasmdev: running, 1 server(s), 0 agent(s), http :{cluster_settings.http_port}" in text
    assert f"k3d-wasmdev-registry: running, push 127.0.0.1:{cluster_settings.registry_port}" in text
    assert "k3d-wasmdev-server-0" in text and "Ready" in text
    assert "node runtime " in text  # which Spin: test_cluster_image.py checks it on a real image
    assert "wasmtime-spin-v2" in text and "handler spin" in text
    assert "hello" in text and image in text
    assert "someone-elses" not in text


async def test_status_without_a_cluster_exits_1_and_says_how_to_create(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings
) -> None:
    code, lines = await run_command(cluster_status, fake_k3d, cluster_settings)
    assert code == 1
    assert "not created (run `wasmdev cluster create`)" in "\n".join(lines)


async def test_status_with_the_api_down_exits_1_without_a_traceback(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, fake_apiserver: FakeApiServer
) -> None:
    await create(fake_k3d, cluster_settings)
    fake_apiserver.stop()
    code, lines = await run_command(cluster_status, fake_k3d, cluster_settings)
    assert code == 1
    assert lines[-1].startswith("kubernetes  not answering:")


# --- what k3d prints --------------------------------------------------------------------------------


def test_version_line_parsing() -> None:
    assert parse_version("k3d version v5.9.0\nk3s version v1.32.5-k3s1 (default)\n") == (5, 9, 0)
    assert parse_version("k3d version v5.8.3") == (5, 8, 3)
    assert parse_version("k3d version v5-dev\n") is None


def test_reason_prefers_the_error_cause_over_the_fatal_verdict() -> None:
    stderr = (
        "\x1b[31mERRO\x1b[0m[0002] Failed Cluster Start: Bind for 0.0.0.0:8081 failed: port is already allocated\n"
        "\x1b[31mERRO\x1b[0m[0002] Failed to create cluster >>> Rolling Back\n"
        "\x1b[31mFATA\x1b[0m[0003] Cluster creation FAILED, all changes have been rolled back!\n"
    )
    result = K3dResult(("k3d", "cluster", "create"), 1, "", stderr)
    assert result.reason() == "Failed Cluster Start: Bind for 0.0.0.0:8081 failed: port is already allocated"
    assert result.problems()[-1] == "Cluster creation FAILED, all changes have been rolled back!"
    plain = K3dResult(
        ("k3d",), 1, "", 'time="2026-01-01T00:00:00Z" level=fatal msg="No nodes found for given cluster"\n'
    )
    assert plain.reason() == "No nodes found for given cluster"


def test_cluster_and_registry_json_shapes(fake_k3d: FakeK3d, cluster_settings: ClusterSettings) -> None:
    # One line of k3d v5.9 `cluster list -o json` (trimmed to the keys wasmdev reads) …
    cluster = json.loads(
        '{"name":"wasmdev","nodes":[{"name":"k3d-wasmdev-server-0","role":"server","runtimeLabels":'
        '{"k3d.server.api.port":"6550"},"State":{"Running":true,"Status":"running","Started":""}},'
        '{"name":"k3d-wasmdev-serverlb","role":"loadbalancer","portMappings":{"6443/tcp":[{"HostIp":"0.0.0.0",'
        '"HostPort":"6550"}],"80/tcp":[{"HostIp":"","HostPort":"8081"}]}}],"serversRunning":1,"serversCount":1,'
        '"agentsRunning":0,"agentsCount":0,"hasLoadbalancer":true}'
    )
    info = parse_cluster(cluster)
    assert (info.http_port, info.api_port, info.running) == (8081, 6550, True)
    registry = parse_registry(
        json.loads(
            '{"name":"k3d-wasmdev-registry","role":"registry","portMappings":{"5000/tcp":[{"HostIp":"0.0.0.0",'
            '"HostPort":"5001"}]},"State":{"Running":true,"Status":"running","Started":""}}'
        )
    )
    assert registry.push_host == "localhost:5001"  # 0.0.0.0 is advertised as localhost, like k3d does
    assert registry.pull_host == "k3d-wasmdev-registry:5000"


@pytest.mark.parametrize("argv", [["cluster", "create", "x", "--bogus"], ["registry", "delete", "nope"]])
async def test_the_fake_fails_like_k3d(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, argv: list[str]
) -> None:
    result = await fake_k3d.cli(cluster_settings.kubeconfig).run(*argv, check=False)
    assert result.returncode == 1
    assert result.problems()


async def test_delete_with_docker_down_says_start_docker(
    fake_k3d: FakeK3d, cluster_settings: ClusterSettings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    lines: list[str] = []
    code = await cluster_delete(cluster_settings, lines.append, cli=fake_k3d.cli(cluster_settings.kubeconfig))
    assert code == 1
    assert "Docker engine is not reachable" in lines[0] and "start Docker" in lines[1]
    assert fake_k3d.calls() == []
