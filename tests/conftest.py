"""Shared test fixtures: where the repo, the sample apps and the shared conformance data live."""

from __future__ import annotations

import os
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
