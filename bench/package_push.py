"""Benchmark: package + push a Spin app as an OCI image, against docker build + save (+ push).

    .venv/bin/python bench/package_push.py [--repeat 3] [--registry http://127.0.0.1:5000] [--no-docker]

Apps: the C sample (hello-c, ~24 KB of wasm) and the Python sample (hello-py, ~18 MB component).
Their wasm is taken from sample-apps/*/target when built; hello-c is otherwise built with zig from
PyPI, and hello-py replaced by a synthetic 18 MB file of random and repetitive bytes (said so in
the output). Everything is copied to a temporary directory first: the samples are never touched.

A third app, combo, holds both components: its "one edit" changes the small one only.

For each app, three scenarios, each the median of --repeat runs:
  cold       empty blob store, repository never pushed
  unchanged  package and push the same build again
  one edit   one component's wasm changed (a custom section appended), packaged and pushed
             (the first component by id: hello-c's, hello-py's 18 MB one, combo's small one)

The baseline, measured in the same run on the same files: ``docker build`` of a FROM-scratch
Dockerfile that COPYs the same files in the same layers, then ``docker save`` to a tar (what a
``k3d image import`` needs), and separately ``docker push`` to the same registry. Cold builds use
--no-cache. Skipped, with a note, when Docker does not answer.

Figures and ratios only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devenv.manifest import load_app  # noqa: E402
from devenv.model import BuiltApp  # noqa: E402
from devenv.oci import OciImage, RegistryClient, package_app  # noqa: E402

PY_SIZE = 18 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def synthetic_wasm(size: int, seed: int = 7) -> bytes:
    """Wasm-like bytes that compress like a componentize-py component: code-ish random runs
    between repetitive tables and strings (gzip gets ~2.5x, as on the real thing)."""
    rng = random.Random(seed)
    out = bytearray(b"\0asm\x0d\0\x01\0")  # component-model preamble
    words = [rng.randbytes(rng.randint(3, 12)) for _ in range(512)]
    while len(out) < size:
        out += rng.randbytes(rng.randint(256, 4096))
        out += b"".join(rng.choice(words) for _ in range(rng.randint(64, 512)))
    return bytes(out[:size])


def append_custom_section(path: Path, counter: int) -> None:
    """Change a wasm file the way a rebuild would (new bytes, still valid wasm)."""
    name = b"wasmdev-bench"
    payload = _leb(len(name)) + name + counter.to_bytes(8, "little")
    with path.open("ab") as f:
        f.write(b"\x00" + _leb(len(payload)) + payload)


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def prepare_app(name: str, work: Path, notes: list[str]) -> Path:
    """Copy sample-apps/<name> to ``work`` with its wasm in place; return the manifest path."""
    src = REPO / "sample-apps" / name
    dst = work / name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    spec = load_app(dst / "spin.toml")
    for cid, component in spec.components.items():
        assert component.source is not None
        if component.source.is_file() and component.source.stat().st_size > 0:
            continue
        component.source.parent.mkdir(parents=True, exist_ok=True)
        if name == "hello-c":
            cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "wasm32-wasi", "-O2", "-s"]
            cmd += ["-o", str(component.source), "src/main.c"]
            proc = subprocess.run(cmd, cwd=dst, capture_output=True, timeout=300)
            if proc.returncode == 0:
                notes.append(f"{name}: built {cid} with zig")
                continue
        size = PY_SIZE if name == "hello-py" else 24 * 1024
        component.source.write_bytes(synthetic_wasm(size))
        notes.append(f"{name}: {cid} is synthetic ({size / 2**20:.1f} MB of wasm-like bytes): not built here")
    return dst / "spin.toml"


def prepare_combo(work: Path, c_manifest: Path, py_manifest: Path) -> Path:
    """Both samples' components in one app: an edit to the small one must not move the big one."""
    dst = work / "combo"
    (dst / "target").mkdir(parents=True)
    small = next(iter(load_app(c_manifest).components.values())).source
    big = next(iter(load_app(py_manifest).components.values())).source
    assert small is not None and big is not None
    shutil.copyfile(small, dst / "target" / "a-small.wasm")
    shutil.copyfile(big, dst / "target" / "big.wasm")
    # New bytes: otherwise the registry already holds hello-py's layer and its cold push is a link.
    append_custom_section(dst / "target" / "big.wasm", 424242)
    (dst / "spin.toml").write_text(
        'spin_manifest_version = 2\n[application]\nname = "combo"\n'
        '[[trigger.http]]\nroute = "/c/..."\ncomponent = "a-small"\nexecutor = { type = "wagi" }\n'
        '[[trigger.http]]\nroute = "/py/..."\ncomponent = "big"\n'
        '[component.a-small]\nsource = "target/a-small.wasm"\n[component.big]\nsource = "target/big.wasm"\n'
    )
    return dst / "spin.toml"


def built(manifest: Path) -> BuiltApp:
    spec = load_app(manifest)
    h = hashlib.sha256(manifest.read_bytes())
    wasm = {}
    for cid, component in sorted(spec.components.items()):
        assert component.source is not None
        h.update(component.source.read_bytes())
        wasm[cid] = component.source
    return BuiltApp(spec=spec, digest="sha256:" + h.hexdigest(), wasm=wasm, built_at=time.time())


# ---------------------------------------------------------------------------------------------
# A registry to push to
# ---------------------------------------------------------------------------------------------


@contextmanager
def local_registry(work: Path) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise SystemExit(
            "docker-registry is not on PATH (apt-get install docker-registry), or pass --registry URL"
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = work / "registry"
    root.mkdir()
    config = root / "config.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/v2/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


@dataclass
class Ours:
    package_ms: list[float] = field(default_factory=list)
    push_ms: list[float] = field(default_factory=list)
    sent: int = 0
    pushed: int = 0
    skipped: int = 0

    def total(self) -> float:
        return statistics.median(a + b for a, b in zip(self.package_ms, self.push_ms, strict=True))


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1000, result


def run_ours(manifest: Path, registry: str, work: Path, repeat: int, compress: bool) -> dict[str, Ours]:
    results = {k: Ours() for k in ("cold", "unchanged", "one edit")}
    client = RegistryClient(registry)
    first_component = sorted(load_app(manifest).components)[0]
    for i in range(repeat):
        store = work / f"store-{manifest.parent.name}-{compress}-{i}"
        repo = f"bench/{manifest.parent.name}-{os.getpid()}-{compress:d}-{i}"
        for scenario in results:
            if scenario == "one edit":
                append_custom_section(load_app(manifest).components[first_component].source, i)  # type: ignore[arg-type]
            b = built(manifest)
            pkg_ms, image = timed(lambda b=b, store=store: package_app(b, store, compress=compress))
            assert isinstance(image, OciImage)
            push_ms, result = timed(lambda image=image, repo=repo: client.push(image, repo, image.tag))
            r = results[scenario]
            r.package_ms.append(pkg_ms)
            r.push_ms.append(push_ms)
            r.sent, r.pushed, r.skipped = result.bytes_sent, result.pushed_blobs, result.skipped_blobs  # type: ignore[attr-defined]
    client.close()
    return results


def docker_ok() -> str:
    if shutil.which("docker") is None:
        return "no docker CLI"
    proc = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=20
    )
    return "" if proc.returncode == 0 else "Docker does not answer (start dockerd)"


def docker_context(image: OciImage, ctx: Path) -> None:
    """The same files as ``image``, in the same layers, as a FROM-scratch build context."""
    if ctx.exists():
        shutil.rmtree(ctx)
    ctx.mkdir(parents=True)
    lines = ["FROM scratch"]
    for layer in image.layers:
        with tarfile.open(image.blob_path(layer.descriptor.digest)) as tar:
            tar.extractall(ctx, filter="data")
            tops = sorted({m.name.split("/")[0] for m in tar.getmembers()})
        for top in tops:
            target = f"/{top}/" if (ctx / top).is_dir() else "/"
            lines.append(f"COPY {top} {target}")
    lines.append('ENTRYPOINT ["/"]')
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")


_BUILT_IMAGES: set[str] = set()  # image ids the baseline made, removed at the end


def docker(*args: str) -> None:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder: what Docker 20.10 uses by default
    proc = subprocess.run(["docker", *args], capture_output=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {proc.stderr.decode()[-500:]}")
    if args[0] == "build":
        _BUILT_IMAGES.add(proc.stdout.decode().strip())


def run_docker(manifest: Path, registry: str, work: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Median ms of build, save and push per scenario, on the same files our image holds."""
    host = registry.split("://", 1)[1]
    out: dict[str, dict[str, list[float]]] = {
        k: {"build": [], "save": [], "push": []} for k in ("cold", "unchanged", "one edit")
    }
    first_component = sorted(load_app(manifest).components)[0]
    for i in range(repeat):
        tag = f"{host}/bench-docker/{manifest.parent.name}-{os.getpid()}:{i}"
        ctx = work / f"ctx-{manifest.parent.name}-{i}"
        store = work / f"docker-store-{i}"
        for scenario, times in out.items():
            if scenario == "one edit":
                append_custom_section(load_app(manifest).components[first_component].source, 1000 + i)  # type: ignore[arg-type]
            docker_context(package_app(built(manifest), store), ctx)  # untimed: preparing the same files
            build = ["build", "-q", "-t", tag, str(ctx)]
            if scenario == "cold":
                build.insert(1, "--no-cache")
            times["build"].append(timed(lambda build=build: docker(*build))[0])
            times["save"].append(
                timed(lambda tag=tag, i=i: docker("save", "-o", str(work / f"save-{i}.tar"), tag))[0]
            )
            times["push"].append(timed(lambda tag=tag: docker("push", tag))[0])
    # Untimed cleanup: every image the baseline built (re-tagged builds leave untagged ones).
    ids = sorted(i for i in _BUILT_IMAGES if i)
    _BUILT_IMAGES.clear()
    if ids:
        subprocess.run(["docker", "rmi", "-f", *ids], capture_output=True)
    return {s: {k: statistics.median(v) for k, v in t.items()} for s, t in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--registry", help="push here instead of a throwaway docker-registry")
    parser.add_argument("--no-docker", action="store_true", help="skip the docker build/save/push baseline")
    parser.add_argument("--apps", nargs="+", default=["hello-c", "hello-py"])
    args = parser.parse_args()

    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wasmdev-bench-") as tmp:
        work = Path(tmp)
        manifests = {name: prepare_app(name, work / "apps", notes) for name in args.apps}
        if {"hello-c", "hello-py"} <= set(manifests):
            manifests["combo"] = prepare_combo(work / "apps", manifests["hello-c"], manifests["hello-py"])
        registry_cm = local_registry(work) if not args.registry else _given(args.registry)
        with registry_cm as registry:
            docker_note = "skipped: --no-docker" if args.no_docker else docker_ok()
            print(f"registry {registry}; {args.repeat} runs per figure (median); times in ms\n")
            for name, manifest in manifests.items():
                wasm_bytes = sum(
                    c.source.stat().st_size for c in load_app(manifest).components.values() if c.source
                )
                print(
                    f"== {name}: {len(load_app(manifest).components)} component(s), {wasm_bytes / 2**20:.2f} MB of wasm"
                )
                ours = run_ours(manifest, registry, work, args.repeat, compress=False)
                gz = run_ours(manifest, registry, work, args.repeat, compress=True)
                base = None if docker_note else run_docker(manifest, registry, work, args.repeat)
                header = (
                    f"{'scenario':<10} {'package':>8} {'push':>8} {'total':>8} {'sent KB':>9} {'blobs':>7}"
                )
                header += f" {'gzip tot':>9}"
                if base:
                    header += (
                        f" {'d.build':>8} {'d.save':>7} {'d.push':>7} {'b+save/ours':>12} {'b+push/ours':>12}"
                    )
                print(header)
                for scenario, r in ours.items():
                    line = (
                        f"{scenario:<10} {statistics.median(r.package_ms):>8.1f} {statistics.median(r.push_ms):>8.1f}"
                        f" {r.total():>8.1f} {r.sent / 1024:>9.1f} {r.pushed:>3}/{r.pushed + r.skipped:<3}"
                        f" {gz[scenario].total():>9.1f}"
                    )
                    if base:
                        b = base[scenario]
                        line += f" {b['build']:>8.0f} {b['save']:>7.0f} {b['push']:>7.0f}"
                        line += f" {(b['build'] + b['save']) / r.total():>11.1f}x {(b['build'] + b['push']) / r.total():>11.1f}x"
                    print(line)
                print()
            print("blobs: layers+configs uploaded / checked.  gzip tot: package+push with +gzip layers.")
            if docker_note:
                print(f"docker baseline {docker_note}")
            for note in notes:
                print(f"note: {note}")


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    main()
