"""Fixtures for the OCI tests: a real distribution registry, containerd's ctr, Docker, and small apps.

The registry is Debian's ``docker-registry`` (the distribution registry k3d runs) on a free
loopback port with a temporary storage root, started once per session. ``ctr`` talks to Docker's
containerd in a namespace of its own, removed afterwards. Each is skipped, with the reason, when
the software is missing here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pytest

from devenv.model import AppSpec, BuiltApp, ComponentSpec, FileMount

CONTAINERD_SOCKET = os.environ.get("WASMDEV_CONTAINERD_SOCKET", "/run/docker/containerd/containerd.sock")
WASM_MAGIC = b"\0asm\x01\0\0\0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registry:
    url: str  # http://127.0.0.1:PORT
    host: str  # 127.0.0.1:PORT
    root: Path


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip(
            "docker-registry (the distribution registry) is not on PATH: apt-get install docker-registry"
        )
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v2/", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"docker-registry did not start: {(root / 'registry.log').read_text()[-500:]}")
            time.sleep(0.05)
        yield Registry(url=url, host=f"127.0.0.1:{port}", root=root)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def unique_repo(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Ctr:
    """``ctr`` against Docker's containerd, in a throwaway namespace."""

    def __init__(self, socket_path: str, namespace: str) -> None:
        self.socket = socket_path
        self.namespace = namespace

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        cmd = ["ctr", "-a", self.socket, "-n", self.namespace, *args]
        proc = subprocess.run(cmd, capture_output=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-1000:]}"
            )
        return proc

    def text(self, *args: str) -> str:
        return self.run(*args).stdout.decode()

    def content(self, digest: str) -> bytes:
        return self.run("content", "get", digest).stdout

    def cleanup(self) -> None:
        refs = self.text("images", "ls", "-q").split()
        if refs:
            self.run("images", "rm", "--sync", *refs, check=False)
        subprocess.run(["ctr", "-a", self.socket, "namespaces", "rm", self.namespace], capture_output=True)


@pytest.fixture
def ctr() -> Iterator[Ctr]:
    if shutil.which("ctr") is None:
        pytest.skip("containerd's ctr is not on PATH: apt-get install containerd")
    if not Path(CONTAINERD_SOCKET).exists():
        pytest.skip(f"no containerd socket at {CONTAINERD_SOCKET}: start dockerd (it runs containerd)")
    client = Ctr(CONTAINERD_SOCKET, f"wasmdev-test-{uuid.uuid4().hex[:8]}")
    probe = client.run("version", check=False)
    if probe.returncode != 0:
        pytest.skip(f"containerd at {CONTAINERD_SOCKET} does not answer: {probe.stderr.decode().strip()}")
    try:
        yield client
    finally:
        client.cleanup()


@pytest.fixture
def docker_client():  # -> docker.DockerClient
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no Docker here"
        pytest.skip(f"Docker does not answer ({exc.__class__.__name__}); start dockerd")
    try:
        yield client
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------
# Small apps on disk: a spin.toml and fake components (packaging never runs the wasm)
# ---------------------------------------------------------------------------------------------

SPIN_TOML = """\
spin_manifest_version = 2

[application]
name = "shop"
version = "1.2.3"
description = "A \\"quoted\\" app\\nwith a newline and ünïcode"

[variables]
greeting = { default = "hi" }
secret = { required = true, secret = true }

[[trigger.http]]
route = "/api/..."
component = "api"

[[trigger.http]]
route = "/static/..."
component = "web"
executor = { type = "wagi" }

[component.api]
source = "target/api.wasm"
allowed_outbound_hosts = ["https://example.com"]
environment = { MODE = "dev" }
[component.api.variables]
greeting = "{{ greeting }}"
[component.api.build]
command = "cargo build"
watch = ["src/**/*.rs"]

[component.web]
source = "target/web.wasm"
files = ["static/**/*", { source = "assets", destination = "/www" }, { source = "cfg/app.json", destination = "/etc/app.json" }]
exclude_files = ["static/private/*"]
"""


def write_app(root: Path, *, api: bytes | None = None, web: bytes | None = None) -> BuiltApp:
    """The "shop" app: two components, files of each kind, an excluded file."""
    (root / "target").mkdir(parents=True, exist_ok=True)
    (root / "spin.toml").write_text(SPIN_TOML)
    (root / "target" / "api.wasm").write_bytes(api if api is not None else WASM_MAGIC + b"api" * 1000)
    (root / "target" / "web.wasm").write_bytes(web if web is not None else WASM_MAGIC + b"web" * 2000)
    for rel, text in {
        "static/index.html": "<h1>shop</h1>",
        "static/css/site.css": "body{}",
        "static/private/key.pem": "SECRET",
        "assets/logo.svg": "<svg/>",
        "cfg/app.json": "{}",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    spec = AppSpec(
        name="shop",
        manifest_path=root / "spin.toml",
        version="1.2.3",
        components=MappingProxyType(
            {
                "api": ComponentSpec(id="api", source=root / "target" / "api.wasm"),
                "web": ComponentSpec(
                    id="web",
                    source=root / "target" / "web.wasm",
                    files=(
                        FileMount("static/**/*"),
                        FileMount("assets", "/www"),
                        FileMount("cfg/app.json", "/etc/app.json"),
                    ),
                    exclude_files=("static/private/*",),
                ),
            }
        ),
    )
    return BuiltApp(
        spec=spec,
        digest=build_digest(root),
        wasm=MappingProxyType({"api": root / "target" / "api.wasm", "web": root / "target" / "web.wasm"}),
        built_at=time.time(),
    )


def build_digest(root: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for rel in ("spin.toml", "target/api.wasm", "target/web.wasm"):
        h.update((root / rel).read_bytes())
    return "sha256:" + h.hexdigest()


@pytest.fixture
def shop(tmp_path: Path) -> BuiltApp:
    return write_app(tmp_path / "shop")
