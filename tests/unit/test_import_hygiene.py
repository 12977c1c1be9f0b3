"""The engine and everything under it never import Textual (the TUI is only a subscriber).

Checked in a fresh interpreter, so modules other tests imported do not hide a stray import.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import devenv

# Every module but the TUI's own (devenv.ui, the layout files) and the entry point, found by
# walking the package so a new engine, target or OCI module is checked without being listed.
_NOT_CORE = ("devenv.ui", "devenv.layouts", "devenv.__main__")
CORE_MODULES = sorted(
    module.name
    for module in pkgutil.walk_packages(devenv.__path__, "devenv.")
    if not module.name.startswith(_NOT_CORE)
)


def _fresh_interpreter(code: str) -> str:
    """What ``code`` prints in a new interpreter (which must exit cleanly)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_core_modules_do_not_import_textual() -> None:
    # One interpreter, modules imported one by one: the first that pulls Textual in is named.
    code = (
        "import importlib, sys\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'textual' in sys.modules:\n"
        "        print(name); break\n"
    )
    printed = _fresh_interpreter(code)
    assert printed == "", f"{printed} pulls in Textual"


def test_core_modules_do_not_import_the_ui_package() -> None:
    # The engine reports into the store and knows nothing of the dashboard; only the entry point
    # (devenv.cli, which opens the dashboard) may reach into devenv.ui.
    names = [name for name in CORE_MODULES if name != "devenv.cli"]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "    if any(m == 'devenv.ui' or m.startswith('devenv.ui.') for m in sys.modules):\n"
        "        print(name); break\n"
    )
    printed = _fresh_interpreter(code)
    assert printed == "", f"{printed} pulls in devenv.ui"


def test_the_walk_finds_the_engine_targets_and_oci_modules() -> None:
    for name in ("devenv.engine.devloop", "devenv.targets.cluster.kube", "devenv.oci.registry", "devenv.cli"):
        assert name in CORE_MODULES
    assert not any(name.startswith("devenv.ui") for name in CORE_MODULES)


def test_the_check_would_see_textual() -> None:
    # Guard against a vacuous test: importing textual itself is detected the same way.
    code = "import sys, textual; print(any(m == 'textual' for m in sys.modules))"
    assert _fresh_interpreter(code) == "True"


def test_the_spin_host_loads_database_and_mqtt_clients_only_when_a_component_connects() -> None:
    # Linking Spin's host APIs happens in wasmdev and in every serving process; the clients cost
    # some 40 MB there, and most apps never open a connection.
    clients = ("redis", "psycopg", "mysql.connector", "paho.mqtt.client")
    code = (
        "import sys\n"
        "from devenv.targets.local.spin.deploy import host_interfaces\n"
        "host_interfaces()\n"
        f"print([m for m in {clients!r} if m in sys.modules])\n"
    )
    assert _fresh_interpreter(code) == "[]"
