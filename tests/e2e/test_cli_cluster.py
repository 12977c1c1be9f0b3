"""The cluster path through the real CLI, as a user runs it: ``wasmdev cluster create|status|delete``
and ``wasmdev up --target k3d|kube --headless`` as subprocesses, on a copy of sample-apps/hello-wat.

What stands where on this machine (no k3s node image or shim can run here):
- the fake ``k3d`` (tests/fakes/k3d) first on PATH, with HOME in the test's folder; the
  kubeconfigs it writes point at
- the fake Kubernetes API server (real HTTP; the real ``kubernetes`` client in the child), whose
  fake controller rolls pods out;
- a real distribution registry (``docker-registry``) started on the host port the fake k3d
  "created" its registry on, so pushed blobs really land in a registry;
- a stand-in for k3d's load balancer + Traefik on the cluster's HTTP host port: it routes by Host
  header and answers Spin's health route once the fake cluster has a Ready pod for the app.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.child_output import Lines
from tests.conftest import SAMPLE_APPS
from tests.fakes.apiserver import FakeApiServer, fake_apiserver_fixture  # noqa: F401 - fixture
from tests.fakes.k3d.harness import (
    FAKE_DIR,
    PUBLISHED_NODE_IMAGE,
    USER_KUBECONFIG,
    FakeK3d,
    free_port,
    make_fake_k3d,
)
from tests.oci import conftest as oci_fixtures

registry = oci_fixtures.registry  # the session-wide real distribution registry
HELLO_WAT = SAMPLE_APPS / "hello-wat"
WAIT_S = 60.0  # a generous bound for a step to show up, never a speed assertion
MANIFEST_ACCEPT = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
# The node image's pods can only start the shim's wasm path with this command (reference §8).
SHIM_COMMAND = ["/"]

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(not (HELLO_WAT / "spin.toml").is_file(), reason="sample-apps/hello-wat is missing"),
]


# --- processes ------------------------------------------------------------------------------------


@dataclass
class User:
    """A user's shell: PATH (with or without k3d), HOME in the test's folder, a workspace."""

    env: dict[str, str]
    workspace: Path
    fake: FakeK3d

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "devenv", *args, "-C", str(self.workspace)],
            capture_output=True,
            text=True,
            env=env or self.env,
            timeout=120,
        )

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "devenv", *args, "-C", str(self.workspace)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or self.env,
        )

    @property
    def wasmdev_kubeconfig(self) -> Path:
        # ClusterSettings' default: ~/.config/wasmdev/kubeconfig-<name>.yaml (never ~/.kube/config)
        return self.fake.home / ".config" / "wasmdev" / "kubeconfig-wasmdev.yaml"

    def without_k3d(self) -> dict[str, str]:
        env = dict(self.env)
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(FAKE_DIR))
        return env


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        code = proc.wait(WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, proc.stderr.read() if proc.stderr else ""


@pytest.fixture
def user(tmp_path: Path, fake_apiserver: FakeApiServer) -> User:
    fake = make_fake_k3d(tmp_path / "k3d", api_server=fake_apiserver.url)
    workspace = tmp_path / "ws"
    shutil.copytree(HELLO_WAT, workspace / "hello-wat", ignore=shutil.ignore_patterns("*.wasm"))
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")
    }
    # The fake k3d first; then the interpreter running the tests (the app's `python build.py`),
    # then the system's tools. No real k3d is on this machine's PATH.
    path = [str(FAKE_DIR), str(fake.root / "pybin"), str(Path(sys.executable).parent), env.get("PATH", "")]
    env.update(fake.env)
    env.update(PATH=os.pathsep.join(path), PYTHONUNBUFFERED="1")
    return User(env=env, workspace=workspace, fake=fake)


# --- a real registry on the port the fake k3d "created" it on --------------------------------------


def start_registry(root: Path, port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not on PATH: apt-get install docker-registry")
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.skip(f"docker-registry did not start on 127.0.0.1:{port}")
        time.sleep(0.05)


def registry_get(base: str, path: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(base + path, method=method, headers={"Accept": MANIFEST_ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def assert_pushed(base: str, repository: str, tag: str) -> None:
    """The image's manifest and every blob it names are in the registry."""
    status, body = registry_get(base, f"/v2/{repository}/manifests/{tag}")
    assert status == 200, f"{repository}:{tag} is not in the registry"
    manifest = json.loads(body)
    manifests = [m["digest"] for m in manifest.get("manifests", [])]
    for digest in manifests:  # an index: each platform manifest too
        status, body = registry_get(base, f"/v2/{repository}/manifests/{digest}")
        assert status == 200, digest
        manifest = json.loads(body)
    blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    assert len(blobs) >= 2
    for digest in blobs:
        assert registry_get(base, f"/v2/{repository}/blobs/{digest}", method="HEAD")[0] == 200, digest


# --- k3d's load balancer + Traefik, played on the cluster's HTTP host port --------------------------


class _Ingress(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, api: FakeApiServer) -> None:
        self.api = api
        self.hosts: list[str] = []
        self.probes: list[tuple[str, str]] = []  # (Host, path) of requests marked as wasmdev's probes
        super().__init__(("127.0.0.1", port), _IngressHandler)


class _IngressHandler(BaseHTTPRequestHandler):
    server: _Ingress

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        host = self.headers.get("Host", "")
        self.server.hosts.append(host)
        if self.headers.get("x-wasmdev-probe"):
            self.server.probes.append((host, self.path))
        app = host.split(".localhost", 1)[0] if ".localhost" in host else ""
        deployment = self.server.api.cluster.get("deployments", "default", app) if app else None
        ready = bool(deployment and (deployment.get("status") or {}).get("readyReplicas"))
        # Traefik: 404 for a host no Ingress routes, 503 while the Service has no ready endpoint.
        code = 404 if deployment is None else 200 if ready else 503
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def ingress_on(fake_apiserver: FakeApiServer) -> Iterator:
    servers: list[_Ingress] = []

    def start(port: int) -> _Ingress:
        server = _Ingress(port, fake_apiserver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- tests ----------------------------------------------------------------------------------------


def deployment_of(api: FakeApiServer, app: str) -> dict:
    found = api.cluster.get("deployments", "default", app)
    assert found is not None, f"no Deployment {app} in the API server"
    return found


def test_k3d_cluster_create_up_edit_and_delete_through_the_cli(
    user: User, fake_apiserver: FakeApiServer, ingress_on, tmp_path: Path
) -> None:
    http_port, registry_port = free_port(), free_port()
    (user.workspace / "wasmdev.toml").write_text(
        f"[cluster]\nhttp_port = {http_port}\nregistry_port = {registry_port}\n"
        f'image = "{PUBLISHED_NODE_IMAGE}"\n'  # the published node image: nothing to build
        "[local]\nprobe_interval_s = 0.2\n"  # latency probes, which must reach *.localhost too
    )

    created = user.run("cluster", "create")
    assert created.returncode == 0, created.stdout + created.stderr
    assert "cluster wasmdev created" in created.stdout
    assert f"push to 127.0.0.1:{registry_port}, pods pull from k3d-wasmdev-registry:5000" in created.stdout
    assert user.wasmdev_kubeconfig.is_file()
    assert "Traceback" not in created.stderr

    # What k3d's registry container and load balancer would now hold on those host ports.
    registry_proc = start_registry(tmp_path / "registry", registry_port)
    ingress = ingress_on(http_port)
    registry_url = f"http://127.0.0.1:{registry_port}"
    try:
        status = user.run("cluster", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"cluster     wasmdev: running, 1 server(s), 0 agent(s), http :{http_port}" in status.stdout
        assert "wasmtime-spin-v2" in status.stdout and "handler spin" in status.stdout
        assert "(none deployed by wasmdev)" in status.stdout

        proc = user.start("up", "--target", "k3d", "--headless")
        try:
            lines = Lines(proc)
            lines.expect(r"\[hello-wat/hello\] build: \$ python build\.py")
            first = lines.expect(
                # first the wasmdev port in front of the ingress (recording, latency), then the ingress
                rf"\[hello-wat\] wasmdev: serving (\w+) at http://127\.0\.0\.1:\d+/ http://hello-wat\.localhost:{http_port}/"
            )
            image = deployment_of(fake_apiserver, "hello-wat")["spec"]["template"]["spec"]["containers"][0][
                "image"
            ]
            pod_spec = deployment_of(fake_apiserver, "hello-wat")["spec"]["template"]["spec"]
            assert pod_spec["runtimeClassName"] == "wasmtime-spin-v2"
            assert pod_spec["containers"][0]["command"] == SHIM_COMMAND
            repository, tag = image.removeprefix("k3d-wasmdev-registry:5000/").rsplit(":", 1)
            assert image.startswith("k3d-wasmdev-registry:5000/") and repository == "hello-wat"
            assert_pushed(registry_url, repository, tag)
            # the post-rollout check went through the host port, routed by the app's host name
            assert f"hello-wat.localhost:{http_port}" in ingress.hosts
            deadline = time.monotonic() + WAIT_S
            while (f"hello-wat.localhost:{http_port}", "/") not in ingress.probes:
                assert time.monotonic() < deadline, f"no latency probe reached the ingress: {ingress.hosts}"
                time.sleep(0.05)

            wat = user.workspace / "hello-wat" / "hello.wat"
            wat.write_text(wat.read_text().replace("hello-wat v1!", "hello-wat v2!"))
            rebuilt = lines.expect(r"\[hello-wat\] wasmdev: built (\w+) in \d+ ms").group(1)
            rolled = lines.expect(
                rf"\[hello-wat\] wasmdev: build {rebuilt} is serving "
                r"\(k3d-wasmdev-registry:5000/hello-wat:(\S+), 1 replica\(s\)\)"
            ).group(1)
            second = lines.expect(
                rf"\[hello-wat\] wasmdev: serving (\w+) at http://127\.0\.0\.1:\d+/ http://hello-wat\.localhost:{http_port}/ "
                r"\(edit→serving (\d+) ms\)"
            )
            assert second.group(1) == rebuilt != first.group(1)
            assert int(second.group(2)) > 0
            new_image = deployment_of(fake_apiserver, "hello-wat")["spec"]["template"]["spec"]["containers"][
                0
            ]["image"]
            new_tag = new_image.rsplit(":", 1)[1]
            assert new_image.startswith("k3d-wasmdev-registry:5000/hello-wat:") and new_tag != tag
            assert rolled == new_tag  # the output names the tag the Deployment now runs
            assert_pushed(registry_url, "hello-wat", new_tag)
            assert not any("does not answer" in line for line in lines.seen), lines.seen
        finally:
            code, stderr = stop(proc)
        assert code == 0, stderr
        assert "Traceback" not in stderr

        status = user.run("cluster", "status")
        assert status.returncode == 0
        assert re.search(
            rf"hello-wat\s+1/1 ready\s+k3d-wasmdev-registry:5000/hello-wat:{new_tag}", status.stdout
        )
    finally:
        registry_proc.terminate()
        registry_proc.wait(10)

    deleted = user.run("cluster", "delete")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert "deleted cluster wasmdev" in deleted.stdout
    assert "deleted registry k3d-wasmdev-registry" in deleted.stdout
    assert user.fake.state()["clusters"] == {} and user.fake.state()["registries"] == {}
    assert not user.wasmdev_kubeconfig.exists()
    # Every k3d call ran with wasmdev's own kubeconfig; the user's file was never rewritten.
    assert all(c["env"]["KUBECONFIG"] == str(user.wasmdev_kubeconfig) for c in user.fake.calls())
    assert user.fake.user_kubeconfig.read_text() == USER_KUBECONFIG


def write_team_kubeconfig(path: Path, server: str) -> Path:
    """Two contexts: the current one points at a dead port, `team` at the fake API server."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "prod", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}},
            {"name": "team", "cluster": {"server": server}},
        ],
        "users": [{"name": "me", "user": {}}],
        "contexts": [
            {"name": "prod", "context": {"cluster": "prod", "user": "me"}},
            {"name": "team", "context": {"cluster": "team", "user": "me"}},
        ],
        "current-context": "prod",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kube_target_deploys_to_the_context_and_registry_given(
    user: User,
    fake_apiserver: FakeApiServer,
    registry: oci_fixtures.Registry,
    tmp_path: Path,
) -> None:
    kubeconfig = write_team_kubeconfig(tmp_path / "team.yaml", fake_apiserver.url)
    before = kubeconfig.read_text()
    env = dict(user.env, KUBECONFIG=str(kubeconfig))
    repo_prefix = f"wasmdev-{tmp_path.name[-12:].lower().strip('_-') or 'e2e'}"
    proc = user.start(
        "up",
        "--target",
        "kube",
        "--context",
        "team",
        "--registry",
        f"{registry.host}/{repo_prefix}",
        "--insecure-registry",
        "--headless",
        env=env,
    )
    try:
        lines = Lines(proc)
        lines.expect(r"\[hello-wat\] wasmdev: serving (\w+) at \(no HTTP route\)")
        pod_spec = deployment_of(fake_apiserver, "hello-wat")["spec"]["template"]["spec"]
        image = pod_spec["containers"][0]["image"]
        assert image.startswith(f"{registry.host}/{repo_prefix}/hello-wat:"), image
        assert pod_spec["runtimeClassName"] == "wasmtime-spin-v2"
        assert pod_spec["containers"][0]["command"] == SHIM_COMMAND
        tag = image.rsplit(":", 1)[1]
        assert_pushed(registry.url, f"{repo_prefix}/hello-wat", tag)
    finally:
        code, stderr = stop(proc)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert kubeconfig.read_text() == before
    assert user.fake.calls() == []  # no k3d anywhere on this path


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (("up", "--target", "k3d", "--headless"), ["k3d", "install.sh"]),
        (("cluster", "create"), ["k3d", "install.sh"]),
    ],
)
def test_without_k3d_on_path_the_cli_says_how_to_install_it(
    user: User, args: tuple[str, ...], wanted: list[str]
) -> None:
    result = user.run(*args, env=user.without_k3d())
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    for word in wanted:
        assert word in output, output
    assert "fix" in output
    assert "Traceback" not in output
    assert not user.wasmdev_kubeconfig.exists()
    assert user.fake.user_kubeconfig.read_text() == USER_KUBECONFIG


def test_kube_without_a_registry_is_refused_with_the_flag_to_pass(
    user: User, fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    kubeconfig = write_team_kubeconfig(tmp_path / "team.yaml", fake_apiserver.url)
    result = user.run(
        "up",
        "--target",
        "kube",
        "--context",
        "team",
        "--headless",
        env=dict(user.env, KUBECONFIG=str(kubeconfig)),
    )
    assert result.returncode == 1
    assert "--registry HOST[:PORT]/REPO" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert fake_apiserver.cluster.get("deployments", "default", "hello-wat") is None


def test_an_unknown_context_names_the_ones_there(
    user: User, fake_apiserver: FakeApiServer, registry: oci_fixtures.Registry, tmp_path: Path
) -> None:
    kubeconfig = write_team_kubeconfig(tmp_path / "team.yaml", fake_apiserver.url)
    result = user.run(
        "up",
        "--target",
        "kube",
        "--context",
        "staging",
        "--registry",
        f"{registry.host}/wasmdev",
        "--insecure-registry",
        "--headless",
        env=dict(user.env, KUBECONFIG=str(kubeconfig)),
    )
    assert result.returncode == 1
    assert "staging" in result.stderr
    assert "contexts there: prod, team" in result.stderr
    assert "--context" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
