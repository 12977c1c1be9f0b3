"""Benchmark: package + push + (faked) rollout of a Spin app through the kube target, against
``docker build`` + ``docker save`` of the same files, measured in the same run.

    .venv/bin/python bench/cluster_deploy.py [--repeat 3] [--poll 0.5] [--no-docker] [--apps hello-c hello-py]

Apps: the C sample (hello-c) and the Python sample (hello-py, an ~18 MB componentize-py component),
copied to a temporary folder and built there ONCE with their own spin.toml build commands (zig
for C, componentize-py for Python, ~11 s). If a build fails the output says so and the sample's
prebuilt target/*.wasm (else synthetic bytes from bench/package_push.py) stands in.

"Ours" is one ``KubeTarget.deploy`` per scenario, as ``wasmdev up --target kube|k3d`` does it:
package the OCI image (devenv.oci), push only the missing blobs to a real distribution registry
(docker-registry on a free loopback port), server-side apply Service/Ingress/Deployment with the
real kubernetes client over HTTP to the fake API server (tests/fakes), and wait for the new build's
pod to be Ready. The rollout is FAKED: the fake controller makes a pod Ready after a few ticks of
``--tick`` seconds, and wasmdev sees it at its next poll (``--poll``, the product's default 0.5 s).
So the rollout column is API round trips + that poll, not a kubelet pulling and starting a pod.
(The fake server's sockets get TCP_NODELAY here; without it each request stalls ~40 ms.)

Scenarios, each the median of --repeat runs (every run starts from a new API server, image store
and registry repository):
  cold       nothing deployed, empty store, repository never pushed
  unchanged  the same build deployed again (nothing to push; the Deployment does not change)
  one edit   the wasm changed (a custom section appended, as a rebuild would): new tag, new rollout

Baseline, on the same files in the same layers (bench/package_push.py's FROM-scratch build
context): ``docker build`` (classic builder; --no-cache when cold) + ``docker save`` to a tar, what
a ``k3d image import`` would then need (the import into every node is not counted; it would only
add to docker's side). ``docker push`` to the same registry is shown too.

Figures and ratios only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from package_push import (  # noqa: E402 - reuse the package/push benchmark's pieces
    PY_SIZE,
    append_custom_section,
    built,
    docker_ok,
    local_registry,
    run_docker,
    synthetic_wasm,
)

from devenv.manifest import load_app  # noqa: E402
from devenv.model import BuiltApp  # noqa: E402
from devenv.store.store import Store  # noqa: E402
from devenv.targets.cluster.kube import KubeTarget, PublishedImage, oci_packager  # noqa: E402
from devenv.targets.cluster.observe import ObserveSettings  # noqa: E402
from devenv.targets.cluster.rollout import RolloutPolicy  # noqa: E402
from tests.fakes import apiserver  # noqa: E402
from tests.fakes.apiserver import FakeApiServer  # noqa: E402

# The fake API server is http.server, which writes a response's headers and body separately; with
# Nagle's algorithm on, each request then stalls ~40 ms on the client's delayed ACK, which would be
# counted against wasmdev (a real API server does not do that). TCP_NODELAY on its sockets.
apiserver._Handler.disable_nagle_algorithm = True

SCENARIOS = ("cold", "unchanged", "one edit")


# ---------------------------------------------------------------------------------------------
# Inputs: each sample built once with its own build command
# ---------------------------------------------------------------------------------------------


def build_sample(name: str, work: Path, notes: list[str]) -> Path:
    src = REPO / "sample-apps" / name
    dst = work / name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "target", "*.wasm"))
    env = dict(os.environ)
    # `python` in the build commands is the interpreter running this (as wasmdev arranges).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    for cid, component in load_app(dst / "spin.toml").components.items():
        assert component.source is not None
        if component.build is None:
            continue
        started = time.perf_counter()
        failed = ""
        for command in component.build.command:
            proc = subprocess.run(
                command, shell=True, cwd=component.build.workdir, env=env, capture_output=True, timeout=900
            )
            if proc.returncode != 0:
                lines = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
                failed = lines[-1] if lines else f"exit {proc.returncode}"
                break
        took = time.perf_counter() - started
        if not failed and component.source.is_file():
            command = " && ".join(component.build.command)
            notes.append(
                f"{name}: built {cid} once with its own command in {took:.1f} s "
                f"({component.source.stat().st_size / 2**20:.2f} MB): {command[:90]}"
                + ("…" if len(command) > 90 else "")
            )
            continue
        component.source.parent.mkdir(parents=True, exist_ok=True)
        prebuilt = src / component.source.relative_to(dst)
        if prebuilt.is_file():
            shutil.copyfile(prebuilt, component.source)
            notes.append(f"{name}: build of {cid} failed ({failed}); used sample-apps' prebuilt wasm")
        else:
            size = PY_SIZE if name == "hello-py" else 24 * 1024
            component.source.write_bytes(synthetic_wasm(size))
            notes.append(
                f"{name}: build of {cid} failed ({failed}); {size / 2**20:.1f} MB of synthetic bytes"
            )
    return dst / "spin.toml"


# ---------------------------------------------------------------------------------------------
# Ours: KubeTarget.deploy against the fake API server, pushing to the real registry
# ---------------------------------------------------------------------------------------------


@dataclass
class Runs:
    publish_ms: list[float] = field(default_factory=list)  # package + push
    deploy_ms: list[float] = field(default_factory=list)  # the whole deploy

    def median(self, which: str) -> float:
        if which == "rollout":
            return statistics.median(d - p for d, p in zip(self.deploy_ms, self.publish_ms, strict=True))
        return statistics.median(self.publish_ms if which == "publish" else self.deploy_ms)


class TimedPackager:
    """The real packager, timed: the deploy's own package + push share."""

    def __init__(self, store_dir: Path) -> None:
        self.inner = oci_packager(store_dir)
        self.last_ms = 0.0

    def __call__(self, b: BuiltApp, push_registry: str) -> PublishedImage:
        started = time.perf_counter()
        try:
            return self.inner(b, push_registry)
        finally:
            self.last_ms = (time.perf_counter() - started) * 1000


async def deploy_runs(
    manifest: Path, registry: str, work: Path, repeat: int, tick: float, poll: float
) -> dict[str, Runs]:
    runs = {s: Runs() for s in SCENARIOS}
    wasm = next(iter(load_app(manifest).components.values())).source
    assert wasm is not None
    host = registry.split("://", 1)[1]
    for i in range(repeat):
        server = FakeApiServer(tick_seconds=tick).start()
        packager = TimedPackager(work / f"store-{manifest.parent.name}-{i}")
        target = KubeTarget(
            Store(),
            None,
            api_client=server.api_client(),
            push_registry=f"{host}/bench-{os.getpid()}-{i}",  # a new repository: cold is cold
            pull_registry=f"{host}/bench-{os.getpid()}-{i}",
            packager=packager,
            rollout=RolloutPolicy(poll_s=poll),
            observe=ObserveSettings(),
            owns_client=True,
        )
        try:
            await target.start()
            for scenario in SCENARIOS:
                if scenario == "one edit":
                    append_custom_section(wasm, 5000 + i)
                b = built(manifest)
                started = time.perf_counter()
                await target.deploy(b)
                runs[scenario].deploy_ms.append((time.perf_counter() - started) * 1000)
                runs[scenario].publish_ms.append(packager.last_ms)
        finally:
            await target.close()
            server.close()
    return runs


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--apps", nargs="+", default=["hello-c", "hello-py"])
    parser.add_argument("--tick", type=float, default=0.02, help="fake controller tick, seconds")
    parser.add_argument("--poll", type=float, default=RolloutPolicy().poll_s, help="rollout poll, seconds")
    parser.add_argument("--no-docker", action="store_true", help="skip the docker build/save baseline")
    args = parser.parse_args()

    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wasmdev-bench-deploy-") as tmp:
        work = Path(tmp)
        manifests = {name: build_sample(name, work / "apps", notes) for name in args.apps}
        with local_registry(work) as registry:
            docker_note = "skipped: --no-docker" if args.no_docker else docker_ok()
            print(
                f"registry {registry}; fake API server tick {args.tick * 1000:.0f} ms, rollout poll "
                f"{args.poll * 1000:.0f} ms; {args.repeat} runs per figure (median); times in ms\n"
            )
            for name, manifest in manifests.items():
                size = sum(
                    c.source.stat().st_size for c in load_app(manifest).components.values() if c.source
                )
                print(f"== {name}: {size / 2**20:.2f} MB of wasm")
                ours = asyncio.run(deploy_runs(manifest, registry, work, args.repeat, args.tick, args.poll))
                base = None if docker_note else run_docker(manifest, registry, work, args.repeat)
                header = f"{'scenario':<10} {'pkg+push':>9} {'rollout':>8} {'deploy':>8}"
                if base:
                    header += f" {'d.build':>8} {'d.save':>7} {'d.push':>7} {'b+save/pkg+push':>16} {'b+save/deploy':>14}"
                print(header)
                for scenario, r in ours.items():
                    publish, rollout, deploy = r.median("publish"), r.median("rollout"), r.median("deploy")
                    line = f"{scenario:<10} {publish:>9.1f} {rollout:>8.1f} {deploy:>8.1f}"
                    if base:
                        d = base[scenario]
                        docker_side = d["build"] + d["save"]
                        line += f" {d['build']:>8.0f} {d['save']:>7.0f} {d['push']:>7.0f}"
                        line += f" {docker_side / publish:>15.1f}x {docker_side / deploy:>13.1f}x"
                    print(line)
                print()
            print(
                "pkg+push: package the OCI image + push missing blobs (inside the deploy).  rollout: apply +\n"
                "wait for the fake pod (ticks + poll), no image pull.  deploy: the whole KubeTarget.deploy."
            )
            if docker_note:
                print(f"docker baseline {docker_note}")
            for note in notes:
                print(f"note: {note}")


if __name__ == "__main__":
    main()
