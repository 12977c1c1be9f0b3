from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One compiled-module cache for the engine tests, so identical builds compile once."""
    return tmp_path_factory.mktemp("wasmdev-cache")
