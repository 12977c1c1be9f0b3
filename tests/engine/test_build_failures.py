"""What a user reads when a build fails: the summary names the cause, from the real output of the
real tools (node, npm, componentize-py, zig, rustc, tsc, python), the whole output is kept, and a
missing toolchain is named with the command that installs it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devenv.engine.builder import Builder
from devenv.errors import BuildError
from devenv.manifest import load_app
from devenv.model import LogStream
from devenv.store import actions as a
from devenv.store.store import Store
from tests.targets.component_builds import CACHE_ROOT

MANIFEST = """\
spin_manifest_version = 2
[application]
name = "{name}"
[[trigger.http]]
route = "/..."
component = "c"
executor = {{ type = "wagi" }}
[component.c]
source = "out.wasm"
[component.c.build]
command = {command}
"""


def write_app(root: Path, name: str, command: str, files: dict[str, str]) -> Path:
    app = root / name
    app.mkdir(parents=True)
    for rel, text in files.items():
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text(text)
    manifest = app / "spin.toml"
    manifest.write_text(MANIFEST.format(name=name, command=json.dumps(command)))  # a TOML basic string
    return manifest


async def failed_build(manifest: Path) -> tuple[str, a.BuildFailed, Store]:
    spec = load_app(manifest)
    store = Store()
    store.dispatch(a.AppLoaded(spec=spec))
    failures: list[a.BuildFailed] = []
    store.subscribe(lambda _s, action: failures.append(action) if isinstance(action, a.BuildFailed) else None)
    with pytest.raises(BuildError) as info:
        await Builder(store).build(spec)
    assert len(failures) == 1
    return str(info.value), failures[0], store


def first_line(message: str) -> str:
    return message.splitlines()[0]


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


MISSING_MODULE_JS = 'import x from "not-a-real-package";\nconsole.log(x);\n'


async def test_node_missing_module_is_summarised_by_its_error_not_the_node_version(tmp_path: Path) -> None:
    need("node")
    manifest = write_app(tmp_path, "js", "node build.mjs", {"build.mjs": MISSING_MODULE_JS})
    message, failed, _ = await failed_build(manifest)
    summary = first_line(message)
    assert "Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'not-a-real-package'" in summary
    assert "Node.js v" not in summary
    assert "Node.js v" in failed.output  # the whole output stays for the panel


async def test_npm_script_failure_is_summarised_by_the_scripts_error(tmp_path: Path) -> None:
    need("npm")
    package = '{"name": "npmapp", "version": "1.0.0", "scripts": {"build": "node build.mjs"}}\n'
    manifest = write_app(
        tmp_path, "npmapp", "npm run build", {"build.mjs": MISSING_MODULE_JS, "package.json": package}
    )
    message, failed, _ = await failed_build(manifest)
    assert "ERR_MODULE_NOT_FOUND" in first_line(message)
    assert "npm error A complete log" not in first_line(message)


async def test_python_traceback_is_summarised_by_its_last_line(tmp_path: Path) -> None:
    script = "def load():\n    raise KeyError('GREETING')\n\nload()\n"
    manifest = write_app(tmp_path, "pyerr", "python3 build.py", {"build.py": script})
    message, failed, _ = await failed_build(manifest)
    assert "KeyError: 'GREETING'" in first_line(message)
    assert "Traceback (most recent call last):" in failed.output


@pytest.mark.slow
async def test_componentize_py_syntax_error_names_the_syntax_error(tmp_path: Path) -> None:
    need("componentize-py")
    command = (
        "componentize-py -w fermyon:spin/http-trigger@2.0.0 componentize -p . "
        "-p \"$(python -c 'import pathlib, spin_sdk; print(pathlib.Path(spin_sdk.__file__).parent.parent)')\" "
        "app -o out.wasm"
    )
    source = "from spin_sdk import http\n\ndef handle(:\n    pass\n"
    manifest = write_app(tmp_path, "pysyntax", command, {"app.py": source})
    message, failed, _ = await failed_build(manifest)
    summary = first_line(message)
    assert "SyntaxError: invalid syntax" in summary and "_start" not in summary
    assert "Stack backtrace" in failed.output


async def test_c_compiler_error_is_summarised_by_the_first_diagnostic(tmp_path: Path) -> None:
    pytest.importorskip("ziglang")
    source = "int main(void) { return undefined_fn(1) }\n"
    manifest = write_app(
        tmp_path, "cerr", "python -m ziglang cc -target wasm32-wasi -s -o out.wasm main.c", {"main.c": source}
    )
    message, _, _ = await failed_build(manifest)
    summary = first_line(message)
    assert "main.c:1:" in summary and "error: call to undeclared function 'undefined_fn'" in summary
    assert "| ^" not in summary


async def test_rustc_error_is_summarised_by_its_error_code_line(tmp_path: Path) -> None:
    if not Path("/usr/bin/rustc").exists():
        pytest.skip(
            "Debian's rustc with the wasm32 std is not installed (apt-get install rustc libstd-rust-dev-wasm32)"
        )
    source = 'fn main() { let x: i32 = "a"; }\n'
    manifest = write_app(
        tmp_path, "rserr", "/usr/bin/rustc --target wasm32-wasi main.rs -o out.wasm", {"main.rs": source}
    )
    message, _, _ = await failed_build(manifest)
    assert "error[E0308]: mismatched types" in first_line(message)


NODE_TOOLS = ("typescript@5.9", "webpack@5", "webpack-cli@5")


def node_tools() -> Path:
    """tsc and webpack from npm, installed once under the test cache."""
    need("npm")
    tools = CACHE_ROOT / "node-tools" / hashlib.sha256(" ".join(NODE_TOOLS).encode()).hexdigest()[:12]
    if not (tools / "ready").exists():
        tools.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(tools), *NODE_TOOLS],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"npm could not install {NODE_TOOLS}: {done.stderr[-500:]}"
        (tools / "ready").write_text("")
    return tools / "node_modules" / ".bin"


async def test_typescript_errors_are_summarised_by_the_first_one(tmp_path: Path) -> None:
    tsc = node_tools() / "tsc"
    source = 'const x: number = "a";\nconsole.log(y);\n'
    manifest = write_app(tmp_path, "tserr", f"{tsc} --noEmit src/index.ts", {"src/index.ts": source})
    message, failed, _ = await failed_build(manifest)
    summary = first_line(message)
    assert "src/index.ts(1,7): error TS2322" in summary
    assert "TS2304" in failed.output


async def test_webpack_errors_are_summarised_by_the_module_error_not_the_error_count(tmp_path: Path) -> None:
    webpack = node_tools() / "webpack"
    manifest = write_app(
        tmp_path,
        "wperr",
        f"{webpack} --mode production --entry ./src/index.js",
        {"src/index.js": 'import x from "./missing";\nconsole.log(x);\n'},
    )
    message, failed, _ = await failed_build(manifest)
    summary = first_line(message)
    assert "ERROR in ./src/index.js" in summary and "Can't resolve './missing'" in summary
    assert "compiled with 1 error" in failed.output and "compiled with" not in summary


async def test_the_whole_output_is_kept_even_when_the_cause_scrolled_far_up(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "print('src/lib.c:3:1: error: expected identifier')\n"
        "for i in range(5000):\n"
        "    print(f'note: expanded from macro {i}')\n"
        "sys.exit(1)\n"
    )
    manifest = write_app(tmp_path, "long", "python3 build.py", {"build.py": script})
    message, failed, store = await failed_build(manifest)
    assert "src/lib.c:3:1: error: expected identifier" in first_line(message)
    assert "src/lib.c:3:1: error" in failed.output and "macro 4999" in failed.output
    build_lines = [x for x in store.logs.tail(10_000) if x.stream is LogStream.BUILD]
    assert any("macro 2500" in x.text for x in build_lines)  # the log has every line


async def test_the_panel_output_and_summary_stay_small_when_lines_are_huge(tmp_path: Path) -> None:
    script = "import sys\nfor _ in range(3):\n    print('error: ' + 'x' * (2 << 20))\nsys.exit(1)\n"
    manifest = write_app(tmp_path, "huge", "python3 build.py", {"build.py": script})
    message, failed, _ = await failed_build(manifest)
    assert first_line(message).count("x") < 2_000
    assert failed.output.count("error: xxx") == 3 and len(failed.output) < 10_000


# --- a missing toolchain --------------------------------------------------------------------


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only what the test links into it (the shell itself is /bin/sh)."""
    bin_dir = tmp_path / "bare-bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


@pytest.mark.parametrize(
    ("command", "tool", "fix"),
    [
        (
            "componentize-py -w spin-http componentize app -o out.wasm",
            "`componentize-py`",
            "pip install componentize-py",
        ),
        ("npm run build", "`npm`", "Node.js"),
    ],
)
async def test_a_missing_tool_is_named_with_its_install_command(
    tmp_path: Path, bare_path: Path, command: str, tool: str, fix: str
) -> None:
    manifest = write_app(tmp_path, "app", command, {})
    message, failed, _ = await failed_build(manifest)
    assert f"{tool} is not installed" in first_line(message)
    assert fix in message.split("fix:", 1)[1]
    assert "not found" in failed.output


async def test_a_missing_python_module_is_named_with_its_pip_package(tmp_path: Path, bare_path: Path) -> None:
    os.symlink("/usr/bin/python3", bare_path / "python")  # Debian's python, without ziglang
    manifest = write_app(tmp_path, "zigapp", "python -m ziglang cc -o out.wasm main.c", {"main.c": ""})
    message, _, _ = await failed_build(manifest)
    assert "`python -m ziglang`: module ziglang is not installed" in first_line(message)
    assert "pip install ziglang" in message


@pytest.mark.slow
async def test_a_module_the_app_imports_but_nobody_installed_names_it_and_the_pip_command(tmp_path: Path) -> None:
    need("componentize-py")
    command = (
        "componentize-py -w fermyon:spin/http-trigger@2.0.0 componentize -p . "
        "-p \"$(python -c 'import pathlib, spin_sdk; print(pathlib.Path(spin_sdk.__file__).parent.parent)')\" "
        "app -o out.wasm"
    )
    source = "import http_router_not_installed\nfrom spin_sdk import http\n"
    manifest = write_app(tmp_path, "pydep", command, {"app.py": source})
    message, _, _ = await failed_build(manifest)
    assert "Python module http_router_not_installed, which the app imports, is not installed" in first_line(message)
    assert "pip install http-router-not-installed" in message
