"""Drive the ``k3d`` CLI (v5.8.3+) as a subprocess and read its JSON.

Every call runs with ``KUBECONFIG`` pointing at wasmdev's own kubeconfig file: k3d loads and
rewrites the *default* kubeconfig on ``cluster delete`` (and on create unless told otherwise), so
with the variable set the user's ``~/.kube/config`` and current context are never touched.

k3d logs INFO to stdout and WARN/ERRO/FATA to stderr, as logrus lines with forced colours, and
exits 0 or 1 only. ``K3dCommandError`` carries the fatal/error lines, stripped of colour, so the
message a user sees is k3d's own reason rather than a wall of log.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devenv.errors import TargetUnavailable, WasmdevError

# The v0.24.0 shim image (k3s v1.35) fails on k3d 5.4.9 and works from 5.8.3 (spinkube-docs #353).
MIN_K3D_VERSION: tuple[int, int, int] = (5, 8, 3)
INSTALL_K3D = (
    "curl -s https://raw.githubusercontent.com/k3d-io/k3d/main/install.sh | bash  (or: brew install k3d)"
)

# The registry container listens on 5000 inside the Docker network unless --enforce-port-match.
REGISTRY_INTERNAL_PORT = 5000

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# logrus text with colours: "FATA[0001] msg"; with LOG_COLORS=false: 'time=".." level=fatal msg=".."'.
_LEVEL_LINE = re.compile(r"^(?P<level>INFO|WARN|ERRO|FATA|DEBU|TRAC)\[\d+\]\s*(?P<msg>.*)$")
_LOGFMT_LINE = re.compile(r'level=(?P<level>\w+)\s+msg="(?P<msg>(?:[^"\\]|\\.)*)"')
_VERSION = re.compile(r"k3d version v?(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class K3dResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def problems(self) -> list[str]:
        """ERRO and FATA messages, in order, without colour codes or timestamps."""
        found: list[str] = []
        for raw in (self.stderr + "\n" + self.stdout).splitlines():
            line = _ANSI.sub("", raw).strip()
            m = _LEVEL_LINE.match(line)
            if m and m.group("level") in ("ERRO", "FATA"):
                found.append(m.group("msg").strip())
                continue
            m = _LOGFMT_LINE.search(line)
            if m and m.group("level") in ("error", "fatal"):
                found.append(m.group("msg").replace('\\"', '"'))
            elif line.startswith("Error: "):  # cobra's own argument errors
                found.append(line[len("Error: ") :])
        return found

    def reason(self) -> str:
        """The most useful single line: the first ERRO (the cause) else the last FATA (the verdict)."""
        problems = self.problems()
        if problems:
            return problems[0]
        tail = _ANSI.sub("", self.stderr).strip().splitlines()
        return tail[-1] if tail else f"exit code {self.returncode}"


@dataclass
class K3dCommandError(WasmdevError):
    """``k3d`` exited non-zero; ``result`` has its full output for --debug and tests."""

    result: K3dResult | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RegistryInfo:
    name: str  # container name, always "k3d-<registry name>"
    host_port: int | None
    host_ip: str
    running: bool

    @property
    def push_host(self) -> str:
        """Where the host pushes. k3d's LocalRegistryHosting advertises the bound address, with
        0.0.0.0 (all interfaces) rewritten to localhost; wasmdev binds 127.0.0.1."""
        host = self.host_ip if self.host_ip not in ("", "0.0.0.0") else "localhost"
        return f"{host}:{self.host_port}"

    @property
    def pull_host(self) -> str:
        """What pods pull from: k3d writes a mirror for NAME:5000 into every node's registries.yaml."""
        return f"{self.name}:{REGISTRY_INTERNAL_PORT}"


@dataclass(frozen=True)
class ClusterInfo:
    name: str
    servers_running: int
    servers_count: int
    agents_running: int
    agents_count: int
    http_port: int | None  # host port mapped to the loadbalancer's :80, if any
    api_port: int | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def running(self) -> bool:
        return self.servers_count > 0 and self.servers_running == self.servers_count


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``k3d version`` prints "k3d version v5.9.0" then the k3s line; dev builds say "v5-dev"."""
    m = _VERSION.search(text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def format_version(version: tuple[int, ...]) -> str:
    return "v" + ".".join(str(p) for p in version)


def _host_port(port_mappings: Mapping[str, Any] | None, container_port: str) -> tuple[str, int | None]:
    bindings = (port_mappings or {}).get(container_port) or []
    for binding in bindings:
        port = str(binding.get("HostPort", ""))
        if port.isdigit():
            return str(binding.get("HostIp", "")), int(port)
    return "", None


def parse_registry(node: Mapping[str, Any]) -> RegistryInfo:
    host_ip, port = _host_port(node.get("portMappings"), f"{REGISTRY_INTERNAL_PORT}/tcp")
    state = node.get("State") or {}
    return RegistryInfo(
        name=str(node.get("name", "")),
        host_port=port,
        host_ip=host_ip,
        running=bool(state.get("Running", False)),
    )


def parse_cluster(obj: Mapping[str, Any]) -> ClusterInfo:
    http_port = api_port = None
    for node in obj.get("nodes") or []:
        mappings = node.get("portMappings")
        if node.get("role") == "loadbalancer":
            http_port = http_port or _host_port(mappings, "80/tcp")[1]
            api_port = api_port or _host_port(mappings, "6443/tcp")[1]
        elif node.get("role") == "server" and api_port is None:
            label = (node.get("runtimeLabels") or {}).get("k3d.server.api.port", "")
            api_port = int(label) if str(label).isdigit() else None
    return ClusterInfo(
        name=str(obj.get("name", "")),
        servers_running=int(obj.get("serversRunning", 0)),
        servers_count=int(obj.get("serversCount", 0)),
        agents_running=int(obj.get("agentsRunning", 0)),
        agents_count=int(obj.get("agentsCount", 0)),
        http_port=http_port,
        api_port=api_port,
        raw=obj,
    )


def registry_matches(container_name: str, registry_name: str) -> bool:
    """k3d matches registry names by ``^/?(k3d-)?NAME$``; do the same so either spelling works."""
    bare = registry_name.removeprefix("k3d-")
    return container_name.lstrip("/") in (bare, f"k3d-{bare}")


class K3dCli:
    """Runs k3d with wasmdev's kubeconfig as KUBECONFIG; one method per command wasmdev uses."""

    def __init__(
        self, kubeconfig: Path, *, executable: str = "k3d", env: Mapping[str, str] | None = None
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.executable = executable
        self._base_env = dict(os.environ if env is None else env)

    # --- plumbing --------------------------------------------------------------------------

    def locate(self) -> str | None:
        """The k3d binary that will run, or None if it is not on PATH."""
        return shutil.which(self.executable, path=self._base_env.get("PATH"))

    def env(self) -> dict[str, str]:
        env = dict(self._base_env)
        # One path, never a list: with several paths k3d only warns and may pick the user's file.
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    async def run(self, *args: str, check: bool = True, what: str = "") -> K3dResult:
        exe = self.locate()
        if exe is None:
            raise TargetUnavailable(
                what="k3d is not installed (not found on PATH)",
                fix=f"install k3d ≥ {format_version(MIN_K3D_VERSION)}: {INSTALL_K3D}",
            )
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        try:
            proc = await asyncio.create_subprocess_exec(
                exe,
                *args,
                env=self.env(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:  # not executable, wrong architecture, a broken symlink …
            raise TargetUnavailable(
                what=f"cannot run k3d at {exe}: {exc.strerror or exc}",
                fix=f"reinstall k3d: {INSTALL_K3D}",
            ) from exc
        try:
            out, err = await proc.communicate()
        except asyncio.CancelledError:
            # Don't leave a k3d running on its own after the caller gave up on it.
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        result = K3dResult(
            ("k3d", *args), proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
        )
        if check and result.returncode != 0:
            raise K3dCommandError(
                what=f"{what or 'k3d ' + ' '.join(args[:2])} failed: {result.reason()}",
                where="k3d " + " ".join(args),
                result=result,
            )
        return result

    async def _json(self, *args: str) -> list[dict[str, Any]]:
        result = await self.run(*args, "-o", "json")
        text = result.stdout.strip()
        try:
            data = json.loads(text) if text else []
        except json.JSONDecodeError as exc:
            raise K3dCommandError(
                what=f"k3d printed something that is not JSON: {text[:200]!r}",
                where="k3d " + " ".join(args),
                result=result,
            ) from exc
        return data if isinstance(data, list) else [data]

    # --- queries ----------------------------------------------------------------------------

    async def version(self) -> tuple[int, int, int] | None:
        """The k3d version, or None for a build that does not say (``v5-dev``)."""
        return parse_version((await self.run("version")).stdout)

    async def list_clusters(self) -> list[ClusterInfo]:
        return [parse_cluster(c) for c in await self._json("cluster", "list")]

    async def get_cluster(self, name: str) -> ClusterInfo | None:
        # `cluster get NAME` is fatal for an unknown name; listing everything is not.
        return next((c for c in await self.list_clusters() if c.name == name), None)

    async def list_registries(self) -> list[RegistryInfo]:
        return [parse_registry(n) for n in await self._json("registry", "list")]

    async def get_registry(self, name: str) -> RegistryInfo | None:
        return next((r for r in await self.list_registries() if registry_matches(r.name, name)), None)

    # --- changes ----------------------------------------------------------------------------

    async def create_registry(self, name: str, host_port: int, host_ip: str = "127.0.0.1") -> K3dResult:
        # Loopback only: the registry has no auth and must not be reachable from the network.
        return await self.run(
            "registry",
            "create",
            name,
            "--port",
            f"{host_ip}:{host_port}",
            "--no-help",
            what=f"creating registry {name!r}",
        )

    async def delete_registry(self, name: str) -> K3dResult:
        return await self.run("registry", "delete", name, what=f"deleting registry {name!r}")

    async def create_cluster(
        self,
        name: str,
        *,
        image: str,
        http_port: int,
        agents: int,
        registry_use: Sequence[str] = (),
        api_port: int | None = None,
    ) -> K3dResult:
        args = [
            "cluster",
            "create",
            name,
            "--image",
            image,
            "--port",
            f"{http_port}:80@loadbalancer",
            "--agents",
            str(agents),
        ]
        # The API on loopback only (k3d's default binds 0.0.0.0, i.e. every interface); the
        # kubeconfig then says https://127.0.0.1:PORT, which the k3s serving cert always covers.
        args += ["--api-port", f"127.0.0.1:{api_port if api_port is not None else 'random'}"]
        for reg in registry_use:
            args += ["--registry-use", reg]
        # Never write the default kubeconfig nor switch the user's current context.
        args += ["--kubeconfig-update-default=false", "--kubeconfig-switch-context=false", "--wait"]
        return await self.run(*args, what=f"creating cluster {name!r}")

    async def start_cluster(self, name: str) -> K3dResult:
        return await self.run("cluster", "start", name, "--wait", what=f"starting cluster {name!r}")

    async def delete_cluster(self, name: str) -> K3dResult:
        return await self.run("cluster", "delete", name, what=f"deleting cluster {name!r}")

    async def write_kubeconfig(self, name: str, path: Path) -> K3dResult:
        """Merge the cluster's context into ``path`` without making it the current context there
        (the file may be shared if the user chose it); wasmdev selects the context by name."""
        path.parent.mkdir(parents=True, exist_ok=True)
        return await self.run(
            "kubeconfig",
            "write",
            name,
            "-o",
            str(path),
            "--kubeconfig-switch-context=false",
            what=f"writing the kubeconfig of {name!r}",
        )

    async def import_image(self, archive: Path, cluster: str) -> K3dResult:
        result = await self.run(
            "image", "import", str(archive), "-c", cluster, what=f"importing {archive.name} into {cluster!r}"
        )
        # In tools-node mode a failed import on a node is only logged and k3d still exits 0.
        if any("failed to import" in p.lower() for p in result.problems()):
            raise K3dCommandError(
                what=f"importing {archive.name} into {cluster!r} failed: {result.reason()}",
                where="k3d image import",
                result=result,
            )
        return result
