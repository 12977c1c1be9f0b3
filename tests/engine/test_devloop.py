"""The dev loop end to end in-process: real builds, real watchfiles, the real local target,
real HTTP. Each test edits files the way a developer does and checks what is served."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from devenv.model import AppStatus, BuildStatus
from devenv.store import actions as a
from tests.engine.session import dev_session
from tests.engine.wat_app import break_source, set_body, wat_source, write_wat_app


async def test_first_build_serves_and_an_edit_is_served_with_edit_to_serving(
    tmp_path: Path, compile_cache: Path
) -> None:
    manifest = write_wat_app(tmp_path, "web", body="hello v1")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "hello v1")
        assert s.store.state.apps["web"].status is AppStatus.SERVING
        set_body(manifest, "hello v2")
        await s.wait_body("web", "hello v2")
        await s.wait(lambda st: st.apps["web"].edit_to_serving_ms is not None, "edit-to-serving figure")
        assert s.store.state.apps["web"].edit_to_serving_ms > 0


async def test_a_failed_build_keeps_the_old_version_serving(tmp_path: Path, compile_cache: Path) -> None:
    manifest = write_wat_app(tmp_path, "web", body="still v1")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "still v1")
        serving = s.store.state.apps["web"].serving_digest
        break_source(manifest)
        await s.wait(lambda st: st.apps["web"].build.status is BuildStatus.FAILED, "the broken build")

        app = s.store.state.apps["web"]
        assert app.status is AppStatus.DEGRADED
        assert app.serving_digest == serving
        assert "python build.py" in app.build.command and "exited with code 2" in app.build.error
        assert "app.wat:" in app.build.output  # the compiler's complaint, for the error panel
        response = await s.get("web")
        assert response.status_code == 200 and "still v1" in response.text

        set_body(manifest, "fixed v2")  # the next good build replaces it and clears the error
        await s.wait_body("web", "fixed v2")
        await s.wait(lambda st: st.apps["web"].status is AppStatus.SERVING, "serving again")


async def test_a_formatter_rewriting_200_files_gives_one_build(tmp_path: Path, compile_cache: Path) -> None:
    manifest = write_wat_app(tmp_path, "fmt")
    manifest.write_text(
        manifest.read_text().replace('watch = ["*.wat"]', 'watch = ["*.wat", "src/**/*.txt"]')
    )
    (tmp_path / "fmt" / "src").mkdir()
    # A quiet period of 300 ms (Tilt uses 200): a loaded CI machine may pause the writer briefly.
    async with dev_session(tmp_path, compile_cache, watch_debounce_ms=300) as s:
        await s.wait(lambda st: st.apps["fmt"].status is AppStatus.SERVING, "first version")
        assert s.count(a.BuildStarted, "fmt") == 1
        for i in range(200):
            (tmp_path / "fmt" / "src" / f"f{i:03d}.txt").write_text(f"formatted {i}\n")
        await s.wait(lambda _st: s.count(a.BuildSucceeded, "fmt") == 2, "the rebuild")
        await asyncio.sleep(1.0)  # room for a (wrong) second rebuild to show up
        assert s.count(a.BuildStarted, "fmt") == 2


async def test_edits_during_a_build_cancel_it_and_the_newest_source_is_served(
    tmp_path: Path, compile_cache: Path
) -> None:
    # The build reads app.wat first, then takes a second: edits land while it runs.
    manifest = write_wat_app(tmp_path, "slow", body="v1", extra_command=" && sleep 1")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("slow", "v1")
        set_body(manifest, "v2")
        await s.wait(lambda _st: s.count(a.BuildStarted, "slow") == 2, "the build of v2 to start")
        await asyncio.sleep(0.3)  # the v2 build has read its source and is sleeping
        for version in ("v3", "v4", "v5"):
            set_body(manifest, version)
            await asyncio.sleep(0.1)
        await s.wait_body("slow", "v5")
        await asyncio.sleep(1.5)  # room for a (wrong) extra build
        started = s.count(a.BuildStarted, "slow")
        assert s.count(a.BuildSucceeded, "slow") == 2  # v1, and one build with v5: the rest were cancelled
        assert started >= 3
        # No superseded build went live: v1, then the newest source.
        served = [x.digest for x in s.actions if isinstance(x, a.VersionServing) and x.app == "slow"]
        assert len(served) == 2
        assert (await s.get("slow")).text.strip() == "v5"


async def test_a_save_cancels_a_hung_build_and_kills_its_process_group(
    tmp_path: Path, compile_cache: Path
) -> None:
    # While `hang` exists the build hangs after reading app.wat (as a stuck compiler would),
    # recording the pid of its `sleep` so the test can see it killed.
    manifest = write_wat_app(
        tmp_path,
        "hung",
        body="v1",
        extra_command=" && if [ -f hang ]; then sh -c 'echo $$ > sleep.pid; exec sleep 3600'; fi",
    )
    app = manifest.parent
    async with dev_session(tmp_path, compile_cache) as s:  # build_timeout_s stays at 600 s
        await s.wait_body("hung", "v1")
        (app / "hang").write_text("")
        set_body(manifest, "v2")
        await s.wait(
            lambda _st: (app / "sleep.pid").exists() and (app / "sleep.pid").read_text().strip() != "",
            "the hung build",
        )
        pid = int((app / "sleep.pid").read_text())
        (app / "hang").unlink()
        set_body(manifest, "v3")
        await s.wait_body("hung", "v3")  # without cancelling, the hung build held this for 600 s
        await s.wait(lambda _st: not _alive(pid), "the hung build's sleep to be killed")
        assert any("build cancelled" in line.text for line in s.store.logs.tail(100))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_broken_manifest_degrades_the_app_but_it_keeps_serving(
    tmp_path: Path, compile_cache: Path
) -> None:
    manifest = write_wat_app(tmp_path, "mani", body="manifest v1")
    good = manifest.read_text()
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("mani", "manifest v1")
        manifest.write_text(good.replace("[component.mani]", "[component.mani\n"))
        await s.wait(lambda st: st.apps["mani"].status is AppStatus.DEGRADED, "the manifest error")
        assert "spin.toml" in s.store.state.apps["mani"].error
        assert "manifest v1" in (await s.get("mani")).text

        set_body(manifest, "manifest v2")
        manifest.write_text(good)
        await s.wait(lambda st: st.apps["mani"].status is AppStatus.SERVING, "the app back")
        await s.wait_body("mani", "manifest v2")
        assert s.store.state.apps["mani"].error == ""


async def test_apps_appear_and_vanish_with_their_manifests(tmp_path: Path, compile_cache: Path) -> None:
    write_wat_app(tmp_path, "first", body="first app")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("first", "first app")
        second = write_wat_app(tmp_path, "second", body="second app")
        await s.wait_body("second", "second app")
        second.unlink()
        await s.wait(lambda st: "second" not in st.apps, "the removed app to go")
        assert "first app" in (await s.get("first")).text


async def test_intents_from_another_thread_rebuild_pause_and_resume(
    tmp_path: Path, compile_cache: Path
) -> None:
    manifest = write_wat_app(tmp_path, "ui", body="intent v1")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("ui", "intent v1")

        def from_ui_thread(action: a.Action) -> None:
            t = threading.Thread(target=s.store.dispatch, args=(action,))
            t.start()
            t.join()

        from_ui_thread(a.RebuildRequested(app="ui"))
        await s.wait(lambda _st: s.count(a.BuildSucceeded, "ui") == 2, "the requested rebuild")

        from_ui_thread(a.WatchPaused())
        await s.wait(lambda st: not st.watching, "watching paused")
        await asyncio.sleep(0.1)
        set_body(manifest, "intent v2")
        await asyncio.sleep(1.0)  # a paused loop must not build this edit
        assert s.count(a.BuildStarted, "ui") == 2
        assert "intent v1" in (await s.get("ui")).text

        from_ui_thread(a.WatchResumed())
        await s.wait_body("ui", "intent v2")  # the edit made while paused is built on resume

        from_ui_thread(a.RestartRequested(app="ui"))
        await s.wait(lambda _st: s.count(a.VersionServing, "ui") >= 4, "the restart to redeploy")
        assert "intent v2" in (await s.get("ui")).text


async def test_a_deploy_the_target_refuses_keeps_the_old_version(tmp_path: Path, compile_cache: Path) -> None:
    manifest = write_wat_app(tmp_path, "refused", body="deployed v1")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("refused", "deployed v1")
        # The default executor wants a wasi:http component; this is a core module: the build
        # succeeds, the target refuses it.
        manifest.write_text(manifest.read_text().replace('executor = { type = "wagi" }\n', ""))
        await s.wait(lambda _st: s.count(a.DeployFailed, "refused") == 1, "the refused deploy")
        app = s.store.state.apps["refused"]
        assert app.status is AppStatus.DEGRADED and "core module" in app.error
        assert "deployed v1" in (await s.get("refused")).text


async def test_a_component_app_is_reported_unsupported_not_crashed(
    tmp_path: Path, compile_cache: Path
) -> None:
    import wasmtime

    app = tmp_path / "comp"
    app.mkdir()
    (app / "c.wasm").write_bytes(wasmtime.wat2wasm("(component)"))
    (app / "spin.toml").write_text(
        'spin_manifest_version = 2\n[application]\nname = "comp"\n'
        '[[trigger.http]]\nroute = "/..."\ncomponent = "c"\n[component.c]\nsource = "c.wasm"\n'
    )
    write_wat_app(tmp_path, "neighbour", body="neighbour ok")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait(lambda st: st.apps["comp"].status is AppStatus.UNSUPPORTED, "the unsupported app")
        assert s.store.state.apps["comp"].error
        await s.wait_body("neighbour", "neighbour ok")  # other apps are unaffected


async def test_a_bad_manifest_at_startup_stops_only_that_app(tmp_path: Path, compile_cache: Path) -> None:
    broken = write_wat_app(tmp_path, "broken", body="repaired")
    good = broken.read_text()
    broken.write_text(good.replace('name = "broken"', "name = 42"))
    write_wat_app(tmp_path, "healthy", body="healthy")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("healthy", "healthy")
        app = s.store.state.apps["broken"]
        assert app.status is AppStatus.FAILED and "spin.toml" in app.error and "name" in app.error

        s.store.dispatch(a.WatchPaused())
        broken.write_text(good)  # fixed while watching is paused: a rebuild by hand picks it up
        await asyncio.sleep(0.3)
        assert s.store.state.apps["broken"].status is AppStatus.FAILED
        s.store.dispatch(a.RebuildRequested(app="broken"))
        await s.wait_body("broken", "repaired")


async def test_shutdown_does_not_wait_for_a_slow_target_start(tmp_path: Path) -> None:
    # A cluster bootstrap can take minutes; quitting during it must stop at once and clean up.
    from devenv.config import load_workspace
    from devenv.engine.devloop import DevLoop
    from devenv.store.store import Store

    class BootstrappingTarget:
        name = "k3d"
        closed = False

        async def start(self) -> None:
            await asyncio.Event().wait()  # never finishes by itself

        async def deploy(self, built):  # noqa: ANN001, ANN201
            raise AssertionError("nothing may deploy before start() returns")

        async def remove(self, app: str) -> None:
            pass

        async def close(self) -> None:
            self.closed = True

    write_wat_app(tmp_path, "waiting")
    workspace = load_workspace(tmp_path)
    store = Store()
    target = BootstrappingTarget()
    loop = DevLoop(store, workspace, target)
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.2)
    assert not loop.ready.is_set()
    store.dispatch(a.ShutdownRequested())
    await asyncio.wait_for(task, 10)
    assert target.closed
    assert store.state.apps["waiting"].status is AppStatus.LOADING  # read, never built


async def test_build_outputs_beside_the_sources_never_trigger_a_build(
    tmp_path: Path, compile_cache: Path
) -> None:
    # No watch globs: everything under the workdir counts, except what the build writes: the
    # component's source (app.wasm, next to app.wat) and the target/ directory.
    manifest = write_wat_app(tmp_path, "beside", body="beside v1")
    text = manifest.read_text().replace('watch = ["*.wat"]\n', "")
    text = text.replace('source = "target/app.wasm"', 'source = "app.wasm"')
    text = text.replace(
        'command = "python build.py"', 'command = "python build.py && cp target/app.wasm app.wasm"'
    )
    manifest.write_text(text)
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("beside", "beside v1")
        set_body(manifest, "beside v2")
        await s.wait_body("beside", "beside v2")
        await asyncio.sleep(1.0)  # room for a (wrong) build triggered by the build's own output
        assert s.count(a.BuildStarted, "beside") == 2


async def test_a_copy_with_the_same_app_name_runs_beside_it_named_after_its_folder(
    tmp_path: Path, compile_cache: Path
) -> None:
    write_wat_app(tmp_path, "twin", body="the first twin")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("twin", "the first twin")
        copy = tmp_path / "copy"
        copy.mkdir()
        (copy / "app.wat").write_text(wat_source("the copied twin"))
        (copy / "build.py").write_text((tmp_path / "twin" / "build.py").read_text())
        (copy / "spin.toml").write_text((tmp_path / "twin" / "spin.toml").read_text())
        # The app already running keeps its name; the newcomer runs under its folder's.
        await s.wait_body("copy", "the copied twin")
        assert "the first twin" in (await s.get("twin")).text
        said = [line.text for line in s.store.logs.tail(200) if "is also declared by" in line.text]
        assert len(said) == 1 and "runs as `copy`" in said[0]

        # Renaming the copy in its manifest: it serves under that name, the folder name goes.
        manifest = copy / "spin.toml"
        manifest.write_text(manifest.read_text().replace('name = "twin"', 'name = "triplet"'))
        await s.wait(lambda st: "triplet" in st.apps and "copy" not in st.apps, "the rename")
        await s.wait(lambda st: st.apps["triplet"].status is AppStatus.SERVING, "the renamed copy serving")


async def test_apps_sharing_a_name_at_startup_all_run_named_after_their_folders(
    tmp_path: Path, compile_cache: Path
) -> None:
    # Every spin-python-sdk example is called `test`.
    for folder, body in (("hello", "hello example"), ("kv", "kv example")):
        manifest = write_wat_app(tmp_path, folder, body=body)
        manifest.write_text(manifest.read_text().replace(f'name = "{folder}"', 'name = "test"', 1))
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("hello", "hello example")
        await s.wait_body("kv", "kv example")
        assert "test" not in s.store.state.apps
        said = [line for line in s.store.logs.tail(200) if "is also declared by" in line.text]
        assert sorted(line.app for line in said) == ["hello", "kv"]  # once per app
        assert s.store.state.apps["hello"].urls != s.store.state.apps["kv"].urls


async def test_a_churning_file_outside_every_watch_set_does_not_hold_a_build(
    tmp_path: Path, compile_cache: Path
) -> None:
    # A quiet period of 2 s (so a cap of 40 s): a file written every 20 ms beside the app would,
    # if it reached the quiet timer, hold the edit's build for the whole cap (WAIT_S is 60 s, and
    # the assertion below allows 30 s; with the churn dropped it takes the quiet period).
    manifest = write_wat_app(tmp_path, "calm", body="calm v1")
    (tmp_path / "calm" / "data").mkdir()
    stop = asyncio.Event()

    async def churn() -> None:
        i = 0
        while not stop.is_set():
            (tmp_path / "calm" / "app.log").write_text(f"line {i}\n")
            (tmp_path / "calm" / "data" / "app.db").write_bytes(i.to_bytes(8, "little"))
            (tmp_path / "server.log").write_text(f"{i}\n")
            i += 1
            await asyncio.sleep(0.02)

    async with dev_session(tmp_path, compile_cache, watch_debounce_ms=2000) as s:
        await s.wait_body("calm", "calm v1")
        writer = asyncio.create_task(churn())
        try:
            await asyncio.sleep(0.5)
            set_body(manifest, "calm v2")
            await s.wait_body("calm", "calm v2", timeout=30)
        finally:
            stop.set()
            await writer
        assert s.count(a.BuildStarted, "calm") == 2  # the churn itself built nothing


async def test_an_app_folder_moved_out_of_the_workspace_is_removed_with_a_log_line(
    tmp_path: Path, compile_cache: Path
) -> None:
    workspace = tmp_path / "ws"
    write_wat_app(workspace, "stays", body="still here")
    write_wat_app(workspace, "leaves", body="leaving")
    async with dev_session(workspace, compile_cache) as s:
        await s.wait_body("leaves", "leaving")
        await s.wait_body("stays", "still here")
        (workspace / "leaves").rename(tmp_path / "elsewhere")
        await s.wait(lambda st: "leaves" not in st.apps, "the moved-out app to be removed")
        assert any(
            line.app == "leaves" and "is gone (moved or deleted): app removed" in line.text
            for line in s.store.logs.tail(100)
        )
        assert "still here" in (await s.get("stays")).text


async def test_an_edit_to_a_granted_file_redeploys_without_a_build(
    tmp_path: Path, compile_cache: Path, sample_apps_dir: Path
) -> None:
    import shutil

    shutil.copytree(
        sample_apps_dir / "hello-wat", tmp_path / "hello-wat", ignore=shutil.ignore_patterns("*.wasm")
    )
    greeting = tmp_path / "hello-wat" / "greeting.txt"
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait(lambda st: st.apps["hello-wat"].status is AppStatus.SERVING, "hello-wat serving")
        assert "Hello from a file" in (await s.get("hello-wat", "/file?greeting.txt")).text
        greeting.write_text("A greeting edited while serving.\n")
        deadline = asyncio.get_running_loop().time() + 60
        while "edited while serving" not in (await s.get("hello-wat", "/file?greeting.txt")).text:
            assert asyncio.get_running_loop().time() < deadline, "the guest kept serving the old copy"
            await asyncio.sleep(0.05)
        assert s.count(a.BuildStarted, "hello-wat") == 1  # a redeploy, not a rebuild
        assert s.count(a.VersionServing, "hello-wat") == 2


async def test_a_deploy_note_is_said_once_not_on_every_save(
    tmp_path: Path, compile_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from devenv.targets.local.target import LocalTarget

    deploy = LocalTarget.deploy

    async def deploy_with_a_note(self: LocalTarget, built):  # noqa: ANN001, ANN202
        result = await deploy(self, built)
        return replace(result, notes=(*result.notes, "imports that are not hosted here"))

    monkeypatch.setattr(LocalTarget, "deploy", deploy_with_a_note)
    manifest = write_wat_app(tmp_path, "noted", body="one")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("noted", "one")
        set_body(manifest, "two")
        await s.wait_body("noted", "two")
        await s.wait(lambda _st: s.count(a.VersionServing, "noted") == 2, "the second deploy")
        said = [x for x in s.actions if isinstance(x, a.LogEmitted) and "not hosted here" in x.line.text]
        assert len(said) == 1  # the log says it once; the dashboard's serving state keeps it
        assert all("imports that are not hosted here" in v.notes for v in s.actions if isinstance(v, a.VersionServing))
