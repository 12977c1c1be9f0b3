"""Rollback on a cluster target: the real dev loop builds a real app and deploys it to the kube
target over the real kubernetes client against the fake API server; a rollback re-applies the
Deployment with the kept image tag, without packaging or pushing again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from devenv.config import load_workspace
from devenv.engine.devloop import DevLoop
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.base import KeepsImages
from tests.engine.session import WAIT_S, Session
from tests.engine.wat_app import set_body, write_wat_app
from tests.fakes.apiserver import FakeApiServer, fake_apiserver_fixture  # noqa: F401 - fixture
from tests.targets.kube_helpers import PULL, RecordingPackager, make_target


def deployed_image(server: FakeApiServer, app: str) -> str:
    dep = server.cluster.get("deployments", "default", app)
    assert dep is not None
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return container["image"]


async def test_cluster_rollback_reapplies_the_kept_image(
    fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    manifest = write_wat_app(tmp_path, "web", body="cluster one")
    workspace = load_workspace(tmp_path)
    store = Store()
    packager = RecordingPackager()
    target = make_target(fake_apiserver, store, packager=packager)
    assert isinstance(target, KeepsImages)
    loop = DevLoop(store, workspace, target, control=False)
    session = Session(store, loop)
    store.subscribe(lambda _s, action: session.actions.append(action))
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(loop.ready.wait(), WAIT_S)
        await session.wait(lambda st: st.apps["web"].serving_digest is not None, "the first rollout")
        first = store.state.apps["web"].serving_digest
        assert first is not None
        first_image = deployed_image(fake_apiserver, "web")
        assert first_image == f"{PULL}/web:b-{first.split(':')[1][:12]}"

        set_body(manifest, "cluster two")
        await session.wait(
            lambda st: st.apps["web"].serving_digest not in (None, first), "the second build's rollout"
        )
        assert deployed_image(fake_apiserver, "web") != first_image
        await session.wait(lambda st: len(st.apps["web"].history) == 2, "two kept builds")
        history = store.state.apps["web"].history
        assert history[1].image == first_image  # the history shows the kept tag
        published = len(packager.calls)
        builds = session.count(a.BuildStarted, "web")

        kept = await loop.timetravel.rollback("web")
        assert kept.digest == first
        assert deployed_image(fake_apiserver, "web") == first_image  # the Deployment went back
        assert store.state.apps["web"].serving_digest == first
        assert store.state.apps["web"].rolled_back_at is not None
        assert len(packager.calls) == published  # nothing packaged or pushed
        assert session.count(a.BuildStarted, "web") == builds  # nothing built
    finally:
        loop.stop()
        await asyncio.wait_for(task, WAIT_S)
