"""Put the fake ``k3d`` on PATH with its own state, call log and HOME, and read back what it did.

The fake is a Python script with a ``#!/usr/bin/env python3`` line; the PATH built here resolves
``python3`` to the interpreter running the tests (a symlink in a private folder), so the fake sees
the same packages (PyYAML) and no real ``k3d`` on the machine can shadow it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devenv.config import ClusterSettings
from devenv.targets.cluster.k3d import K3dCli
from tests.fakes.apiserver import FakeApiServer, fake_apiserver  # noqa: F401 - fixture used below

FAKE_DIR = Path(__file__).resolve().parent
USER_KUBECONFIG = """\
# the user's own kubeconfig: wasmdev must never rewrite it
apiVersion: v1
kind: Config
clusters:
- name: work
  cluster: {server: "https://work.example:6443"}
contexts:
- name: work
  context: {cluster: work, user: me}
users:
- name: me
  user: {token: abc}
current-context: work
"""


@dataclass
class FakeK3d:
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def state_path(self) -> Path:
        return self.root / "k3d-state.json"

    @property
    def log_path(self) -> Path:
        return self.root / "k3d-calls.jsonl"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def user_kubeconfig(self) -> Path:
        return self.home / ".kube" / "config"

    def calls(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def argvs(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls()]

    def calls_of(self, *prefix: str) -> list[list[str]]:
        return [a for a in self.argvs() if tuple(a[: len(prefix)]) == prefix]

    def state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {"clusters": {}, "registries": {}}
        return json.loads(self.state_path.read_text())

    def edit_state(self, fn: Any) -> None:
        state = self.state()
        fn(state)
        self.state_path.write_text(json.dumps(state))

    def fail(self, command: str, reason: str) -> None:
        knobs = json.loads(self.env.get("FAKE_K3D_FAIL") or "{}")
        knobs[command] = reason
        self.env["FAKE_K3D_FAIL"] = json.dumps(knobs)

    def cli(self, kubeconfig: Path) -> K3dCli:
        return K3dCli(kubeconfig, env=self.env)

    def remove_from_path(self) -> None:
        self.env["PATH"] = str(self.root / "pybin")


def make_fake_k3d(root: Path, *, api_server: str | None = None, version: str = "v5.9.0") -> FakeK3d:
    pybin = root / "pybin"
    pybin.mkdir(parents=True, exist_ok=True)
    link = pybin / "python3"
    if not link.exists():
        link.symlink_to(sys.executable)
    fake = FakeK3d(root)
    fake.home.mkdir(parents=True, exist_ok=True)
    fake.user_kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    fake.user_kubeconfig.write_text(USER_KUBECONFIG)
    fake.env = {
        "PATH": f"{FAKE_DIR}{os.pathsep}{pybin}",
        "HOME": str(fake.home),
        "FAKE_K3D_STATE": str(fake.state_path),
        "FAKE_K3D_LOG": str(fake.log_path),
        "FAKE_K3D_VERSION": version,
    }
    if api_server:
        fake.env["FAKE_K3D_API_SERVER"] = api_server
    return fake


# --- pytest fixtures (import them into a test module) --------------------------------------------


PUBLISHED_NODE_IMAGE = "ghcr.io/spinframework/containerd-shim-spin/k3d:v0.24.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_k3d(tmp_path: Path, fake_apiserver: FakeApiServer, monkeypatch: pytest.MonkeyPatch) -> FakeK3d:  # noqa: F811
    """The fake k3d, writing kubeconfigs that point at the fake API server."""
    fake = make_fake_k3d(tmp_path / "k3d", api_server=fake_apiserver.url)
    # The test process's own HOME too: nothing may reach the real user's files either.
    monkeypatch.setenv("HOME", str(fake.home))
    return fake


@pytest.fixture
def cluster_settings(tmp_path: Path) -> ClusterSettings:
    """Default settings on free ports, with the kubeconfig in the test's folder, and the shim
    project's published k3d node image, so no node image is built (test_cluster_image.py builds
    one for real)."""
    return ClusterSettings(
        image=PUBLISHED_NODE_IMAGE,
        http_port=free_port(),
        registry_port=free_port(),
        kubeconfig=tmp_path / "wasmdev" / "kubeconfig-wasmdev.yaml",
    )
