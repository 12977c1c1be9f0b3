"""Which changed paths rebuild which app, and the glob dialect of `build.watch`."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.engine.changeset import AppRules, ChangeSet, classify, glob_regex, is_ignored
from devenv.manifest import load_app
from tests.engine.wat_app import write_wat_app


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("src/**/*.c", "src/main.c", True),
        ("src/**/*.c", "src/a/b/x.c", True),
        ("src/**/*.c", "src/main.h", False),
        ("src/**/*.c", "lib/main.c", False),
        ("*.wat", "app.wat", True),
        ("*.wat", "sub/app.wat", False),
        ("**/*.py", "app.py", True),
        ("**/*.py", "a/b/app.py", True),
        ("Cargo.toml", "Cargo.toml", True),
        ("src/*.{c,h}", "src/x.h", True),
        ("src/*.{c,h}", "src/x.o", False),
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file10.txt", False),
        ("[ab].txt", "b.txt", True),
    ],
)
def test_watch_globs_follow_spin_semantics(pattern: str, path: str, matches: bool) -> None:
    assert bool(glob_regex(pattern).match(path)) is matches


def test_output_dirs_and_editor_files_are_ignored() -> None:
    assert is_ignored(Path("target/app.wasm"))
    assert is_ignored(Path("src/.zig-cache/o/x"))
    assert is_ignored(Path("node_modules/x/index.js"))
    assert is_ignored(Path("src/.main.c.swp"))
    assert is_ignored(Path("src/main.c~"))
    assert not is_ignored(Path("src/main.c"))


def test_paths_map_to_the_apps_they_belong_to(tmp_path: Path) -> None:
    one = load_app(write_wat_app(tmp_path, "one"))
    two = load_app(write_wat_app(tmp_path, "two"))
    rules = {one.manifest_path: AppRules.of(one), two.manifest_path: AppRules.of(two)}
    change = classify(
        [
            tmp_path / "one" / "app.wat",  # matches one's watch glob
            tmp_path / "two" / "target" / "app.wasm",  # two's build output: never a trigger
            tmp_path / "two" / "build.py",  # not in two's watch globs
            tmp_path / "two" / "spin.toml",  # two's manifest: reload
        ],
        rules,
        first_seen=10.0,
    )
    assert change.rebuild == {"one"}
    assert change.reload == {two.manifest_path}
    assert not change.rediscover
    assert change.first_seen == 10.0


def test_without_watch_globs_anything_under_the_workdir_but_outputs_counts(tmp_path: Path) -> None:
    manifest = write_wat_app(tmp_path, "noglob")
    manifest.write_text(manifest.read_text().replace('watch = ["*.wat"]\n', ""))
    spec = load_app(manifest)
    rules = {spec.manifest_path: AppRules.of(spec)}
    app = tmp_path / "noglob"
    assert classify([app / "notes" / "x.txt"], rules).rebuild == {"noglob"}
    assert classify([app / "target" / "app.wasm"], rules).rebuild == set()
    assert classify([tmp_path / "elsewhere.wat"], rules).rebuild == set()


def test_a_new_manifest_asks_for_rediscovery_and_merges_keep_the_first_time(tmp_path: Path) -> None:
    change = classify([tmp_path / "new" / "spin.toml"], {}, first_seen=5.0)
    assert change.rediscover
    later = ChangeSet(rebuild={"x"}, first_seen=7.0)
    later.merge(change)
    assert later.rediscover and later.rebuild == {"x"} and later.first_seen == 5.0


def test_a_component_without_a_build_redeploys_when_its_source_changes(tmp_path: Path) -> None:
    manifest = write_wat_app(tmp_path, "prebuilt")
    text = manifest.read_text()
    text = text[: text.index("[component.prebuilt.build]")]
    manifest.write_text(text.replace('source = "target/app.wasm"', 'source = "prebuilt.wasm"'))
    spec = load_app(manifest)
    rules = {spec.manifest_path: AppRules.of(spec)}
    app = tmp_path / "prebuilt"
    assert classify([app / "prebuilt.wasm"], rules).rebuild == {"prebuilt"}
    assert classify([app / "app.wat"], rules).rebuild == set()  # nothing builds from it


def test_granted_files_redeploy_and_unrelated_churn_asks_for_nothing(tmp_path: Path) -> None:
    manifest = write_wat_app(tmp_path, "files")
    manifest.write_text(
        manifest.read_text().replace(
            'source = "target/app.wasm"',
            'source = "target/app.wasm"\nfiles = ["static/*.txt", "greeting.txt"]',
        )
    )
    spec = load_app(manifest)
    rules = {spec.manifest_path: AppRules.of(spec)}
    app = tmp_path / "files"
    granted = classify([app / "static" / "a.txt", app / "greeting.txt"], rules)
    assert granted.redeploy == {"files"} and not granted.rebuild and granted
    # A log written every 20 ms beside the app, a database under it, a file outside every app:
    # nothing to do, so the dev loop drops them before they reach the quiet timer.
    churn = classify([app / "app.log", app / "data" / "app.db", tmp_path / "notes.txt"], rules)
    assert not churn and churn == ChangeSet()
    # A source edit rebuilds; the build's deploy re-stages the files, so no redeploy of its own.
    both = classify([app / "app.wat", app / "greeting.txt"], rules)
    assert both.rebuild == {"files"}


def test_a_vanished_app_folder_asks_to_check_its_manifest(tmp_path: Path) -> None:
    spec = load_app(write_wat_app(tmp_path / "ws", "moved"))
    rules = {spec.manifest_path: AppRules.of(spec)}
    change = classify([tmp_path / "ws" / "moved"], rules)
    assert change.vanished == {spec.manifest_path} and not change.rebuild
