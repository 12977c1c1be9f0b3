"""Shared test fixtures: where the repo, the sample apps and the shared conformance data live."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_APPS = REPO_ROOT / "sample-apps"


def shared_dir() -> Path | None:
    """../shared beside the checkout (CI lays a copy there); WASMDEV_SHARED_DIR overrides."""
    env = os.environ.get("WASMDEV_SHARED_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_apps_dir() -> Path:
    return SAMPLE_APPS


# CI installs and starts everything the suite needs (CI=true there), so in CI a
# skipped test means a missing install step, not a machine that lacks Docker: fail it instead of
# letting a green run hide it. Opt-in suites (k3d) are deselected, not skipped, so they are unaffected.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    strict = os.environ.get("CI") == "true" or os.environ.get("WASMDEV_STRICT_ENV") == "1"
    if strict and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"skipped where the environment must be complete (CI=true or WASMDEV_STRICT_ENV=1): {reason}"
        )


def _activate_test_environment() -> None:
    """Builds run with the user's PATH, as Spin runs them; a user activates the virtualenv that
    has the toolchains. The suite does the same for the interpreter it runs on (CI activates it;
    `/work/venv/bin/python -m pytest` does not), so a sample's `python` or `componentize-py` is
    that environment's."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[:1] != [bin_dir]:
        os.environ["PATH"] = bin_dir + (os.pathsep + path if path else "")
    if sys.prefix != sys.base_prefix:
        os.environ.setdefault("VIRTUAL_ENV", sys.prefix)


_activate_test_environment()
