"""Build history and rollback end to end: real builds of a WAT app, the real local target, real
HTTP. A rollback serves a kept build again without building, and the next save builds anew."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from devenv.errors import WasmdevError
from devenv.store import actions as a
from devenv.targets.local.target import LocalTarget
from tests.engine.session import dev_session
from tests.engine.wat_app import set_body, write_wat_app


async def test_edit_twice_roll_back_then_the_next_save_builds(tmp_path: Path, compile_cache: Path) -> None:
    manifest = write_wat_app(tmp_path, "web", body="body one")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "body one")
        set_body(manifest, "body two")
        await s.wait_body("web", "body two")
        set_body(manifest, "body three")
        await s.wait_body("web", "body three")
        # At once, as a user would: the new build serves a moment before the engine says so,
        # and "the previous build" must still mean the one before it.
        kept = await s.loop.timetravel.rollback("web")
        assert "body two" in (await s.get("web")).text
        set_body(manifest, "body three")  # back to three: a rebuild, its digest already kept
        await s.wait_body("web", "body three")
        await s.wait(lambda st: len(st.apps["web"].history) == 3, "three kept builds")
        history = s.store.state.apps["web"].history
        assert kept.digest == history[1].digest
        assert [b.served for b in history] == [True, True, True]
        assert history[0].digest == s.store.state.apps["web"].serving_digest
        assert history[0].changed == ("app.wat",) and history[1].changed == ("app.wat",)
        assert history[2].changed == ()  # the first build: nothing to compare with
        assert history[0].edit_to_serving_ms is not None
        builds = s.count(a.BuildStarted, "web")
        target = s.loop.target
        assert isinstance(target, LocalTarget) and target.cache is not None
        compiled = target.cache.compiled

        kept = await s.loop.timetravel.rollback("web")  # the build before the one serving
        assert kept.digest == history[1].digest
        assert "body two" in (await s.get("web")).text  # served as soon as rollback returned
        app = s.store.state.apps["web"]
        assert app.serving_digest == history[1].digest and app.rolled_back_at is not None
        assert any(
            "rolled back to" in line.text and "save to build again" in line.text
            for line in s.store.logs.tail(20)
        )

        first = await s.loop.timetravel.rollback("web", history[2].short_digest)
        assert first.digest == history[2].digest
        assert "body one" in (await s.get("web")).text
        assert s.count(a.BuildStarted, "web") == builds  # no build ran for either rollback
        assert target.cache.compiled == compiled  # and nothing was compiled: cache hits
        assert len(s.store.state.apps["web"].history) == 3  # a rollback keeps no new build

        set_body(manifest, "body four")
        await s.wait_body("web", "body four")
        assert s.count(a.BuildStarted, "web") == builds + 1
        assert target.cache.compiled > compiled  # a new build's code is compiled: the count is live
        await s.wait(lambda st: st.apps["web"].rolled_back_at is None, "the rollback banner cleared")


async def test_rollback_from_the_dashboard_intent_and_its_errors(tmp_path: Path, compile_cache: Path) -> None:
    manifest = write_wat_app(tmp_path, "web", body="alpha")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "alpha")
        with pytest.raises(WasmdevError, match="no kept build older than the one serving"):
            await s.loop.timetravel.rollback("web")
        with pytest.raises(WasmdevError, match="matches no kept build"):
            await s.loop.timetravel.rollback("web", "ffffffffffff")
        with pytest.raises(WasmdevError, match="no app named nope"):
            await s.loop.timetravel.rollback("nope")
        set_body(manifest, "beta")
        await s.wait_body("web", "beta")
        s.store.dispatch(a.RollbackRequested(app="web"))  # what the dashboard's key sends
        await s.wait_body("web", "alpha")
        await s.wait(lambda st: st.apps["web"].rolled_back_at is not None, "the rollback shown")


async def test_history_keeps_only_the_last_n_builds_on_disk(tmp_path: Path, compile_cache: Path) -> None:
    manifest = write_wat_app(tmp_path, "web", body="v1")
    async with dev_session(tmp_path, compile_cache, local_keep_builds=2) as s:
        await s.wait_body("web", "v1")
        for body in ("v2", "v3", "v4"):
            set_body(manifest, body)
            await s.wait_body("web", body)
        await s.wait(lambda st: st.apps["web"].history[0].digest == st.apps["web"].serving_digest, "v4 kept")
        history = s.store.state.apps["web"].history
        assert len(history) == 2
        folders = list((s.loop.timetravel.history.root / "web").iterdir())
        assert len(folders) == 2 and all((f / "web.wasm").is_file() for f in folders)
        # The kept build's wasm is a frozen copy: the next build overwrote the build output.
        await s.loop.timetravel.rollback("web")
        assert "v3" in (await s.get("web")).text
    assert not s.loop.timetravel.history.root.exists()  # the session's history goes with it


def test_changed_files_leave_out_build_outputs_and_output_folders(tmp_path: Path) -> None:
    from devenv.engine.history import changed_files, snapshot_sources

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.c").write_text("int x;")
    (tmp_path / "app.wasm").write_bytes(b"\0asm")
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "out.o").write_bytes(b"o")
    before = snapshot_sources(tmp_path, frozenset({"app.wasm"}))
    assert set(before) == {"src/main.c"}
    (tmp_path / "src" / "main.c").write_text("int y = 2;")
    (tmp_path / "src" / "new.h").write_text("")
    (tmp_path / "app.wasm").write_bytes(b"\0asm\1")
    after = snapshot_sources(tmp_path, frozenset({"app.wasm"}))
    assert changed_files(before, after) == ("src/main.c", "src/new.h")
    assert changed_files(None, after) == ()


def test_a_new_session_removes_history_left_by_dead_sessions_only(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from devenv.engine.history import BuildHistory, state_dir
    from devenv.store.store import Store

    base = state_dir(tmp_path) / "history"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left_by_dead = base / f"session-{dead.stdout.strip()}-0a0a0a0a"
    live = base / f"session-{os.getppid()}-0b0b0b0b"  # our parent runs: its folder stays
    for folder in (left_by_dead, live):
        (folder / "web").mkdir(parents=True)
    history = BuildHistory(Store(), tmp_path, keep=3)
    assert not left_by_dead.exists() and live.exists()
    assert history.root.parent == base and history.root.name.startswith(f"session-{os.getpid()}-")


def test_a_build_whose_copy_fails_is_not_kept_pointing_at_the_live_output(tmp_path: Path) -> None:
    """A copy that fails (full disk, read-only state folder) raises, so the build is not kept
    with its wasm path still naming the build output a later build overwrites; a component
    whose wasm is simply missing keeps its path (the deploy names the missing file)."""
    import errno

    from devenv.engine.history import freeze_build
    from devenv.manifest import load_app
    from devenv.model import BuiltApp

    manifest = write_wat_app(tmp_path / "app", "web", body="one")
    spec = load_app(manifest)
    source = next(c.source for c in spec.components.values() if c.source is not None)
    assert source is not None
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"\0asm\1\0\0\0")
    built = BuiltApp(spec=spec, digest="sha256:" + "1" * 64, wasm={"web": source}, built_at=0.0)

    folder = tmp_path / "kept"
    (folder / "web.wasm").mkdir(parents=True)  # the copy cannot be written there
    with pytest.raises(OSError) as caught:
        freeze_build(built, folder)
    assert caught.value.errno in (errno.EISDIR, errno.EACCES)

    source.unlink()
    missing = freeze_build(built, tmp_path / "kept-missing")
    assert missing.wasm["web"] == source  # nothing to copy: the deploy will name the file


GATE_PY = """\
import pathlib, time
started = time.monotonic()
while not pathlib.Path("gate").exists() and time.monotonic() - started < 120:
    time.sleep(0.02)
"""


async def test_a_rollback_during_a_build_is_deployed_after_that_builds_deploy(
    tmp_path: Path, compile_cache: Path
) -> None:
    """Every deploy of an app goes through its worker: a rollback asked for while a build runs
    waits for that build's deploy and then serves, instead of being overwritten by it a moment
    after it reported success."""
    import asyncio

    manifest = write_wat_app(tmp_path, "web", body="one", extra_command=" && python gate.py")
    (manifest.parent / "gate.py").write_text(GATE_PY)
    gate = manifest.parent / "gate"
    gate.touch()
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "one")
        set_body(manifest, "two")
        await s.wait_body("web", "two")
        builds = s.count(a.BuildStarted, "web")
        gate.unlink()  # the next build waits at the gate
        set_body(manifest, "three")
        await s.wait(lambda _st: s.count(a.BuildStarted, "web") > builds, "the build of three started")
        rollback = asyncio.ensure_future(s.loop.timetravel.rollback("web"))  # to one
        gate.touch()
        kept = await rollback
        await s.wait(lambda st: len(st.apps["web"].history) == 3, "three kept (its deploy happened)")
        assert "one" in (await s.get("web")).text
        assert s.store.state.apps["web"].serving_digest == kept.digest == s.store.state.apps["web"].history[2].digest
        set_body(manifest, "four")  # a save after the rollback builds and serves as usual
        await s.wait_body("web", "four")


async def test_a_build_that_cannot_be_kept_serves_and_the_log_says_what_where_and_the_fix(
    tmp_path: Path, compile_cache: Path
) -> None:
    manifest = write_wat_app(tmp_path, "web", body="kept")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "kept")
        history = s.loop.timetravel.history
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("")
        history.root = blocker / "session"  # its folders cannot be made: as a read-only .wasmdev
        set_body(manifest, "not kept")
        await s.wait_body("web", "not kept")  # it serves all the same

        def warning() -> str:
            return next((ln.text for ln in s.store.logs.tail(50) if "could not keep build" in ln.text), "")

        await s.wait(lambda _st: bool(warning()), "the warning")
        assert str(blocker) in warning() and "a rollback cannot return to it" in warning()
        assert "fix: free disk space or make" in warning()
        assert len(s.store.state.apps["web"].history) == 1  # only the first build is kept


async def _wait_get(s, app: str, suffix: str, text: str) -> None:  # noqa: ANN001 - a dev_session
    deadline = asyncio.get_running_loop().time() + 60
    body = ""
    while text not in body:
        assert asyncio.get_running_loop().time() < deadline, f"{suffix} never served {text!r}; last {body!r}"
        body = (await s.get(app, suffix, headers={"x-wasmdev-replay": "1"})).text
        await asyncio.sleep(0.05)


async def test_a_rollback_serves_the_granted_files_as_they_were_at_that_build(
    tmp_path: Path, compile_cache: Path, sample_apps_dir: Path
) -> None:
    """The greeting (a granted file) is edited between two builds: rolling back to the first
    build serves the first greeting, not today's; an edit to the file after the rollback serves
    the edit (today's files again)."""
    shutil.copytree(sample_apps_dir / "hello-wat", tmp_path / "hello-wat", ignore=shutil.ignore_patterns("*.wasm"))
    greeting = tmp_path / "hello-wat" / "greeting.txt"
    wat = tmp_path / "hello-wat" / "hello.wat"
    greeting.write_text("greeting one\n")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait(lambda st: bool(st.apps["hello-wat"].urls), "hello-wat serving")
        await _wait_get(s, "hello-wat", "/file?greeting.txt", "greeting one")
        greeting.write_text("greeting two\n")  # redeployed with the same build: no new kept build
        await _wait_get(s, "hello-wat", "/file?greeting.txt", "greeting two")
        wat.write_text(wat.read_text().replace("hello-wat v1!", "hello-wat v2!"))
        await _wait_get(s, "hello-wat", "/x", "hello-wat v2!")
        await s.wait(lambda st: len(st.apps["hello-wat"].history) == 2, "two kept builds")

        await s.loop.timetravel.rollback("hello-wat")
        assert "hello-wat v1!" in (await s.get("hello-wat", "/x")).text
        assert "greeting one" in (await s.get("hello-wat", "/file?greeting.txt")).text

        greeting.write_text("greeting three\n")
        await _wait_get(s, "hello-wat", "/file?greeting.txt", "greeting three")
        assert "hello-wat v1!" in (await s.get("hello-wat", "/x")).text  # still the rolled-back code


def test_a_kept_build_copies_its_granted_files_within_the_cap(tmp_path: Path) -> None:
    from devenv.frozen_builds import freeze_files
    from devenv.manifest import load_app
    from devenv.model import BuiltApp

    manifest = write_wat_app(tmp_path / "apps", "web", body="files")
    text = manifest.read_text().replace(
        'source = "target/app.wasm"\n',
        'source = "target/app.wasm"\nfiles = ["static/*.css", { source = "data", destination = "/data" }]\n',
    )
    manifest.write_text(text)
    root = manifest.parent
    (root / "static").mkdir()
    (root / "static" / "site.css").write_text("body {}")
    (root / "static" / "notes.md").write_text("not granted")
    (root / "data").mkdir()
    (root / "data" / "rows.json").write_text("[1]")
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the app")
    (root / "static" / "leak.css").symlink_to(outside)
    built = BuiltApp(spec=load_app(manifest), digest="sha256:" + "2" * 64, wasm={}, built_at=0.0)

    kept = freeze_files(built, tmp_path / "kept")
    assert kept.files_root == tmp_path / "kept"
    copied = sorted(p.relative_to(kept.files_root).as_posix() for p in kept.files_root.rglob("*") if p.is_file())
    assert copied == ["data/rows.json", "static/site.css"]  # not the ungranted file, not the link out
    (root / "static" / "site.css").write_text("body { color: red }")
    assert (kept.files_root / "static" / "site.css").read_text() == "body {}"

    too_big = freeze_files(built, tmp_path / "kept-small", max_bytes=4)
    assert too_big.files_root is None and not (tmp_path / "kept-small").exists()
