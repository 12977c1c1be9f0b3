"""``wasmdev cluster image``: the k3d node image built for real by the Docker engine, from
stand-in base images (never pulled), and read back: its files, labels and configuration."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.config import ClusterSettings
from devenv.engine.doctor import check_node_image
from devenv.errors import TargetUnavailable
from devenv.model import StepState, StepStatus
from devenv.targets.cluster.bootstrap import BootstrapOptions, bootstrap_cluster
from devenv.targets.cluster.commands import cluster_status
from devenv.targets.cluster.node_image import (
    LABEL_K3S,
    LABEL_SHIM,
    LABEL_SPIN,
    built_image_ref,
    ensure_node_image,
    inspect_runtime,
)
from devenv.targets.cluster.node_readiness import Polling
from tests.fakes import apiserver
from tests.fakes.k3d import harness
from tests.fakes.k3d.harness import FakeK3d
from tests.fakes.node_images.standins import StandIns, shim_script
from tests.oci.conftest import docker_client  # noqa: F401  (a fixture)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def standins(docker_client) -> Iterator[StandIns]:  # noqa: F811
    made = StandIns(docker_client)
    try:
        yield made
    finally:
        made.cleanup()


def unique_k3s() -> str:
    # A k3s tag no real image has, so the test owns every image it names.
    return f"v1.35.{uuid.uuid4().int % 100000}-k3s1"


def read_file(client, image: str, path: str) -> tuple[bytes, int]:  # noqa: ANN001
    container = client.containers.create(image, command=["/x"])
    try:
        stream, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.getmembers()[0]
            return tar.extractfile(member).read(), member.mode
    finally:
        container.remove(force=True)


@pytest.mark.docker
def test_builds_the_node_image_from_k3s_and_the_kind_images_shim(standins: StandIns) -> None:
    client = standins.client
    k3s, shim = unique_k3s(), "v0.25.1"
    standins.k3s(k3s)
    standins.kind(shim)
    ref = built_image_ref(shim, k3s)
    standins.made.append(ref)
    notes: list[str] = []
    settings = ClusterSettings(shim=shim, k3s=k3s)
    before = check_node_image(settings)
    assert not before.ok and before.fix == "wasmdev cluster image" and "not built yet" in before.detail

    image = ensure_node_image(shim, k3s, client=client, progress=notes.append)

    after = check_node_image(settings)
    assert after.ok and after.detail == f"{ref}: Spin 4.0.1 (shim v0.25.1)"

    assert image.built and image.ref == ref
    assert image.runtime.shim == "v0.25.1" and image.runtime.spin == "4.0.1"
    assert not any(n.startswith("pulling") for n in notes), notes  # both bases were present
    built = client.images.get(ref)
    assert built.labels[LABEL_SHIM] == "v0.25.1"
    assert built.labels[LABEL_SPIN] == "4.0.1"
    assert built.labels[LABEL_K3S] == k3s
    data, mode = read_file(client, ref, "/bin/containerd-shim-spin-v2")
    assert data == shim_script(shim) and mode & 0o111  # the Kind image's binary, still executable
    assert read_file(client, ref, "/bin/k3s")[0] == b"#!/bin/sh\necho k3s stand-in\n"  # the base, kept
    assert built.attrs["Config"]["Entrypoint"] == ["/bin/k3s"]  # k3s's own entrypoint, not the kind one
    assert inspect_runtime(ref, client).describe() == "Spin 4.0.1 (shim v0.25.1)"

    again = ensure_node_image(shim, k3s, client=client, progress=notes.append)
    assert not again.built and again.ref == ref and again.runtime == image.runtime


@pytest.mark.docker
def test_a_base_that_cannot_be_pulled_is_one_error_with_the_fix(standins: StandIns) -> None:
    k3s = unique_k3s()
    standins.k3s(k3s)
    shim = f"v0.99.{uuid.uuid4().int % 100000}"  # no such release: never present, never pullable
    with pytest.raises(TargetUnavailable) as err:
        ensure_node_image(shim, k3s, client=standins.client)
    assert f"could not pull ghcr.io/spinframework/containerd-shim-spin/kind:{shim}" in err.value.what
    assert "docker pull" in err.value.fix and "docker login" in err.value.fix
    import docker

    with pytest.raises(docker.errors.ImageNotFound):  # nothing half-built is left under its name
        standins.client.images.get(built_image_ref(shim, k3s))


def test_bad_tags_are_refused_before_docker_is_asked() -> None:
    with pytest.raises(TargetUnavailable) as err:
        ensure_node_image("0.25.1", "v1.35.2-k3s1", client=object())
    assert err.value.where == "--shim / [cluster].shim"
    with pytest.raises(TargetUnavailable) as err:
        ensure_node_image("v0.25.1", "latest", client=object())
    assert err.value.where == "--k3s / [cluster].k3s"


def test_the_published_images_runtime_comes_from_the_version_table() -> None:
    runtime = inspect_runtime("ghcr.io/spinframework/containerd-shim-spin/k3d:v0.24.0", client=object())
    assert (runtime.shim, runtime.spin, runtime.spin_version) == ("v0.24.0", "3.6.3", (3, 6))


@pytest.mark.docker
def test_the_cli_prints_the_image_reference_as_its_last_word(standins: StandIns, tmp_path: Path) -> None:
    k3s, shim = unique_k3s(), "v0.25.0"
    standins.k3s(k3s)
    standins.kind(shim)
    standins.made.append(built_image_ref(shim, k3s))
    (tmp_path / "wasmdev.toml").write_text(f'[cluster]\nshim = "{shim}"\nk3s = "{k3s}"\n')
    (tmp_path / "app").mkdir()
    run = [sys.executable, "-m", "devenv", "-C", str(tmp_path), "cluster", "image"]
    first = subprocess.run(run, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines()[-1].split()[-1] == built_image_ref(shim, k3s)
    assert "built" in first.stdout and "Spin 4.0.1" in first.stdout
    second = subprocess.run([*run, "--k3s", k3s], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert second.returncode == 0 and "reused" in second.stdout
    assert second.stdout.strip().split()[-1] == built_image_ref(shim, k3s)


# --- `cluster create` with a built node image, against the fake k3d --------------------------------

fake_apiserver = apiserver.fake_apiserver
fake_k3d = harness.fake_k3d
cluster_settings = harness.cluster_settings


@pytest.mark.docker
async def test_cluster_create_builds_the_node_image_and_knows_its_runtime(
    standins: StandIns, fake_k3d: FakeK3d, cluster_settings: ClusterSettings
) -> None:
    k3s = unique_k3s()
    standins.k3s(k3s)
    standins.kind("v0.25.1")
    ref = built_image_ref("v0.25.1", k3s)
    standins.made.append(ref)
    settings = dataclasses.replace(cluster_settings, image="", shim="v0.25.1", k3s=k3s)
    fast = BootstrapOptions(docker_ping=lambda: None, polling=Polling(timeout=5.0, interval=0.02))
    steps: list[StepState] = []

    endpoint = await bootstrap_cluster(
        settings, steps.append, cli=fake_k3d.cli(settings.kubeconfig), options=fast
    )

    [create] = fake_k3d.calls_of("cluster", "create")
    assert create[create.index("--image") + 1] == ref
    assert (
        endpoint.node_runtime is not None and endpoint.node_runtime.describe() == "Spin 4.0.1 (shim v0.25.1)"
    )
    done = [s for s in steps if s.key == "nodeimage" and s.status is StepStatus.DONE]
    assert done and done[-1].detail == f"built {ref}: Spin 4.0.1 (shim v0.25.1)"

    # Reusing the cluster: the runtime is read from the image its server node runs (k3d reports
    # the image ID), even with [cluster].image now naming something else.
    again = await bootstrap_cluster(
        dataclasses.replace(settings, image="ghcr.io/example/other:v1"),
        steps.append,
        cli=fake_k3d.cli(settings.kubeconfig),
        options=fast,
    )
    assert not again.created_cluster
    assert again.node_runtime is not None and again.node_runtime.shim == "v0.25.1"
    assert len(fake_k3d.calls_of("cluster", "create")) == 1

    lines: list[str] = []
    await cluster_status(
        settings, lines.append, cli=fake_k3d.cli(settings.kubeconfig), docker_ping=lambda: None
    )
    assert "node runtime Spin 4.0.1 (shim v0.25.1)" in lines


@pytest.mark.docker
def test_the_cli_says_a_failed_pull_once_with_the_fix(standins: StandIns, tmp_path: Path) -> None:
    k3s = unique_k3s()
    standins.k3s(k3s)
    shim = f"v0.99.{uuid.uuid4().int % 100000}"
    run = [
        sys.executable,
        "-m",
        "devenv",
        "-C",
        str(tmp_path),
        "cluster",
        "image",
        "--shim",
        shim,
        "--k3s",
        k3s,
    ]
    done = subprocess.run(run, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-2].startswith(
        f"error: could not pull ghcr.io/spinframework/containerd-shim-spin/kind:{shim}"
    )
    assert lines[-1].startswith("  fix: connect to the network") and "docker pull" in lines[-1]
    assert "Traceback" not in done.stdout + done.stderr


def test_the_cli_says_when_docker_does_not_answer(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path / 'no-docker.sock'}"}
    run = [sys.executable, "-m", "devenv", "-C", str(tmp_path), "cluster", "image"]
    done = subprocess.run(run, capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert f"the Docker engine is not reachable at unix://{tmp_path / 'no-docker.sock'}" in out
    assert "fix: start Docker" in out and "docker info" in out
    assert "Traceback" not in out
