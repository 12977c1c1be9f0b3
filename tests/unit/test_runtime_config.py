"""Spin's runtime-config.toml as the local target reads it, and how it reaches the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.cli import build_parser, load
from devenv.errors import ManifestError
from devenv.runtime_config import load_runtime_config, workspace_runtime_config


def test_stores_and_databases_resolve_against_the_files_folder(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "runtime-config.toml"
    path.parent.mkdir()
    path.write_text(
        '[key_value_store.cache]\ntype = "spin"\npath = "data/cache.db"\n\n'
        '[key_value_store.scratch]\ntype = "spin"\n\n'
        '[sqlite_database.reports]\ntype = "spin"\npath = "/abs/reports.db"\n\n'
        '[llm_compute]\ntype = "spin"\n'  # a table for other runtimes: left alone
    )
    config = load_runtime_config(path)
    assert config.key_value_stores["cache"].path == tmp_path / "conf" / "data" / "cache.db"
    assert config.key_value_stores["scratch"].path is None  # in memory, as Spin
    assert config.sqlite_databases["reports"].path == Path("/abs/reports.db")


def test_a_backend_the_local_target_lacks_is_refused_naming_the_table(tmp_path: Path) -> None:
    path = tmp_path / "rc.toml"
    path.write_text('[key_value_store.cache]\ntype = "redis"\nurl = "redis://localhost"\n')
    with pytest.raises(ManifestError) as caught:
        load_runtime_config(path)
    assert "[key_value_store.cache]" in caught.value.where
    assert "'redis'" in caught.value.what and 'type = "spin"' in caught.value.fix


def test_the_flag_and_the_setting(tmp_path: Path) -> None:
    rc = tmp_path / "rc.toml"
    rc.write_text('[sqlite_database.r]\ntype = "spin"\npath = "r.db"\n')
    args = build_parser().parse_args(["up", "-C", str(tmp_path), "--runtime-config-file", str(rc)])
    workspace = load(args)
    assert workspace.settings.local.runtime_config == rc
    config = workspace_runtime_config(workspace.settings.local.runtime_config, workspace.root)
    assert config is not None and config.sqlite_databases["r"].path == tmp_path / "r.db"
    (tmp_path / "wasmdev.toml").write_text('[local]\nruntime_config = "rc.toml"\n')
    workspace = load(build_parser().parse_args(["up", "-C", str(tmp_path)]))
    config = workspace_runtime_config(workspace.settings.local.runtime_config, workspace.root)
    assert config is not None and config.path == tmp_path / "rc.toml"
