"""The engine and everything under it never import Textual (the TUI is only a subscriber).

Checked in a fresh interpreter, so modules other tests imported do not hide a stray import.
"""

from __future__ import annotations

import subprocess
import sys

CORE_MODULES = [
    "devenv.engine.builder",
    "devenv.engine.changeset",
    "devenv.engine.watcher",
    "devenv.engine.devloop",
    "devenv.engine.samplers",
    "devenv.engine.headless",
    "devenv.engine.doctor",
    "devenv.engine.runner",
    "devenv.store",
    "devenv.store.reducer",
    "devenv.targets.base",
    "devenv.targets.local.target",
    "devenv.manifest",
    "devenv.config",
    "devenv.model",
]


def test_core_modules_do_not_import_textual() -> None:
    # One interpreter, modules imported one by one: the first that pulls Textual in is named.
    code = (
        "import importlib, sys\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'textual' in sys.modules:\n"
        "        print(name); break\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{out.stdout.strip()} pulls in Textual"


def test_the_check_would_see_textual() -> None:
    # Guard against a vacuous test: importing textual itself is detected the same way.
    code = "import sys, textual; print(any(m == 'textual' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True"
