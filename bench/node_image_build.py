"""`wasmdev cluster image`: the k3d node image build, cold (bases present, nothing built yet) and
cached (the image is there: reused), against the Docker engine running here.

The bases are stand-ins made with the Engine API's image import (never pulled): a rancher/k3s
image and a shim kind image whose containerd-shim-spin-v2 is padded to --shim-mb (the real
v0.25.1 binary is tens of MB; its copy and the layer write dominate a cold build). Each cold run
gets a new k3s tag, so the engine's build cache cannot help. The baseline is the engine's floor
for any build on that base: `FROM base` + one LABEL, from an in-memory context, in the same run.
Pulling the real bases (network) is not measured. Figures, never pass/fail.

    python bench/node_image_build.py [--runs N] [--shim-mb MB]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tarfile
import time
import uuid
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devenv.targets.cluster.node_image import built_image_ref, ensure_node_image  # noqa: E402
from tests.fakes.node_images.standins import StandIns  # noqa: E402


def padded_kind(standins: StandIns, shim: str, megabytes: int) -> None:
    """The kind stand-in, with a shim binary of about ``megabytes`` (random: incompressible)."""
    from devenv.targets.cluster.node_image import KIND_IMAGE

    data = b"#!/bin/sh\nexit 0\n" + os.urandom(megabytes * 1_000_000)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("usr/local/bin/containerd-shim-spin-v2")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    ref = KIND_IMAGE.format(shim=shim)
    repository, _, tag = ref.rpartition(":")
    standins.client.api.import_image_from_data(out.getvalue(), repository=repository, tag=tag)
    standins.made.append(ref)


def baseline_build(client: docker.DockerClient, base: str, tag: str) -> float:
    context = io.BytesIO()
    dockerfile = f"FROM {base}\nLABEL dev.wasmdev.bench={uuid.uuid4().hex}\n".encode()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    context.seek(0)
    started = time.perf_counter()
    client.images.build(fileobj=context, custom_context=True, tag=tag, pull=False, rm=True)
    return (time.perf_counter() - started) * 1000


def line(name: str, times: list[float]) -> str:
    return f"{name:<40} median {statistics.median(times):8.1f} ms   min {min(times):8.1f}   max {max(times):8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shim-mb", type=int, default=60)
    args = parser.parse_args()
    client = docker.from_env(timeout=600)
    standins = StandIns(client)
    shim = f"v0.98.{uuid.uuid4().int % 100000}"  # a tag only this run uses
    cold, cached, floor = [], [], []
    try:
        padded_kind(standins, shim, args.shim_mb)
        for _ in range(args.runs):
            k3s = f"v1.35.{uuid.uuid4().int % 100000}-k3s1"
            base = standins.k3s(k3s)
            standins.made.append(built_image_ref(shim, k3s))
            floor_tag = f"wasmdev-bench/floor:{k3s}"
            standins.made.append(floor_tag)
            floor.append(baseline_build(client, base, floor_tag))
            started = time.perf_counter()
            assert ensure_node_image(shim, k3s, client=client).built
            cold.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            assert not ensure_node_image(shim, k3s, client=client).built
            cached.append((time.perf_counter() - started) * 1000)
    finally:
        standins.cleanup()
        client.close()
    print(f"shim binary {args.shim_mb} MB, {args.runs} runs, Docker {docker.from_env().version()['Version']}")
    print(line("baseline: FROM base + LABEL (engine floor)", floor))
    print(line("cold: copy shim out + build + label", cold))
    print(line("cached: image present, reused", cached))
    print(f"ratio cold / baseline (median): {statistics.median(cold) / statistics.median(floor):.2f}x")
    print(f"ratio cached / baseline (median): {statistics.median(cached) / statistics.median(floor):.3f}x")


if __name__ == "__main__":
    main()
