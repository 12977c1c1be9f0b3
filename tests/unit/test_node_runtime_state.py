"""The node's runtime as state: dispatched once known, shown in the dashboard's status line and
by `wasmdev doctor`."""

from __future__ import annotations

import os

import pytest

from devenv.config import ClusterSettings
from devenv.engine.doctor import check_node_image
from devenv.model import EngineState, NodeRuntime
from devenv.store.actions import NodeRuntimeDetected
from devenv.store.reducer import reduce
from devenv.ui.widgets.status_bar import status_text

SPIN3 = NodeRuntime(
    image="ghcr.io/spinframework/containerd-shim-spin/k3d:v0.24.0", shim="v0.24.0", spin="3.6.3"
)


def test_the_reducer_keeps_the_detected_runtime_and_the_status_line_shows_it() -> None:
    state = reduce(EngineState(target="k3d"), NodeRuntimeDetected(SPIN3))
    assert state.node_runtime == SPIN3
    assert reduce(state, NodeRuntimeDetected(SPIN3)) is state  # the same fact changes nothing
    line = status_text(state, "side-by-side").plain
    assert "target k3d (Spin 3.6.3 (shim v0.24.0))" in line
    assert "Spin" not in status_text(EngineState(), "side-by-side").plain


def test_a_local_spin_and_an_unknown_node_describe_themselves() -> None:
    assert NodeRuntime(image="", shim=None, spin="4.1.0").describe() == "Spin 4.1.0"
    assert (
        NodeRuntime(image="sha256:ab", shim=None, spin=None).describe()
        == "unknown shim (node image sha256:ab)"
    )
    assert NodeRuntime(image="", shim=None, spin="4.1.0").spin_version == (4, 1)


def test_doctor_names_the_published_images_spin_without_docker() -> None:
    check = check_node_image(ClusterSettings(image=SPIN3.image))
    assert check.ok and check.detail == f"{SPIN3.image}: Spin 3.6.3 (shim v0.24.0)"


def test_doctor_reports_the_installed_spins_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from devenv.engine.doctor import check_spin
    from tests.fakes.spin.harness import FAKE_SPIN_DIR

    monkeypatch.setenv("PATH", f"{FAKE_SPIN_DIR}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SPIN_VERSION", "4.0.1")
    check = check_spin()
    assert check.ok and check.detail == f"4.0.1 at {FAKE_SPIN_DIR / 'spin'}"
    monkeypatch.setenv("PATH", "/nonexistent")
    missing = check_spin()
    assert not missing.ok and not missing.required and "spinframework.dev/install" in missing.fix
