"""wasmdev.toml's settings for Spin 4: [cluster] shim and k3s (the built node image) and
[local] runtime (embedded, an installed spin, or auto)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.config import ClusterSettings, LocalSettings, load_workspace
from devenv.errors import ManifestError


def test_defaults_build_the_node_image_and_pick_the_runtime_per_app() -> None:
    assert ClusterSettings().image == "" and ClusterSettings().shim == "" and ClusterSettings().k3s == ""
    assert LocalSettings().runtime == "auto"


def test_shim_k3s_and_runtime_are_read(tmp_path: Path) -> None:
    (tmp_path / "wasmdev.toml").write_text(
        '[cluster]\nshim = "v0.25.0"\nk3s = "v1.35.2-k3s1"\n[local]\nruntime = "spin"\n'
    )
    settings = load_workspace(tmp_path).settings
    assert (settings.cluster.shim, settings.cluster.k3s, settings.local.runtime) == (
        "v0.25.0",
        "v1.35.2-k3s1",
        "spin",
    )
    assert settings.with_overrides(cluster_shim="v0.24.0").cluster.shim == "v0.24.0"


def test_an_unknown_runtime_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "wasmdev.toml").write_text('[local]\nruntime = "wasmtime"\n')
    with pytest.raises(ManifestError) as caught:
        load_workspace(tmp_path)
    assert "local.runtime" in str(caught.value)
