"""Each app's worker: one task per app that builds, then deploys unless superseded.

Every deploy of one app is made by its one worker, acting on the slot's flags, so an app never
builds twice at once:

- a change while the app is building cancels that build (its whole process group is killed, as
  Skaffold and Tilt do: a hung or slow build never holds the next one back) and one rebuild
  follows with the newest source; a build that ends before the cancel lands is dropped the same;
- a failed build or deploy leaves the version already serving in place (the store marks the
  app degraded and keeps the compiler's output);
- builds deploy in the order they were made, so a build older than the one serving never goes
  live;
- a change to a file the app grants its guest (``files``) redeploys the version serving, which
  re-stages the files;
- a rollback (time travel) is handed to the app's worker too: a rollback asked for during a
  build waits for that build's deploy and then supersedes it, and an edit saved after it builds
  and deploys after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time

from devenv.engine.app_slots import AppSlot, PendingRollback
from devenv.engine.builder import Builder
from devenv.engine.system_log import one_line, say
from devenv.engine.timetravel import DeployVia, TimeTravel
from devenv.errors import BuildError, WasmdevError
from devenv.model import BuiltApp
from devenv.store import actions as a
from devenv.store.store import Store
from devenv.targets.base import Target, UnsupportedApp

log = logging.getLogger(__name__)


class AppWorkers:
    """Runs each slot's worker task; what they share (the target, the builder, a bound on builds
    running at once) lives here, what each app has seen lives in its slot."""

    def __init__(self, store: Store, target: Target, builder: Builder, timetravel: TimeTravel) -> None:
        self.store = store
        self.target = target
        self.builder = builder
        self.timetravel = timetravel
        # Builds of different apps overlap, up to a bound: a slow toolchain (componentize-py takes
        # ~10 s) should not hold a 0.1 s WAT build back, but 20 apps must not start 20 compilers.
        self._build_slots = asyncio.Semaphore(max(4, os.cpu_count() or 4))

    def start(self, slot: AppSlot) -> None:
        """Start the slot's worker unless it has one."""
        if slot.worker is None:
            slot.worker = asyncio.create_task(self._work(slot), name=f"app {slot.name}")

    async def stop(self, slot: AppSlot) -> None:
        """Cancel the slot's worker (and the build it runs) and wait for it to end."""
        if slot.worker is not None:
            slot.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await slot.worker

    async def serve_kept(self, slot: AppSlot, built: BuiltApp, via: DeployVia | None = None) -> bool:
        """Have the slot's worker deploy a kept build again (a rollback: no build runs); True once
        it serves. A failure keeps what served before and is reported like any failed deploy."""
        if slot.worker is None or slot.worker.done():
            return False
        pending = PendingRollback(built, via, asyncio.get_running_loop().create_future())
        slot.rollbacks.append(pending)
        slot.wake.set()
        worker = slot.worker
        try:
            # The worker may be removed with its app meanwhile: then nothing deploys it.
            await asyncio.wait((pending.served, worker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not pending.served.done():
                pending.served.cancel()  # the worker passes over a rollback nobody waits for
        return not pending.served.cancelled() and pending.served.result()

    async def _work(self, slot: AppSlot) -> None:
        while True:
            await slot.wake.wait()
            slot.wake.clear()
            await self._roll_back(slot)
            if slot.restart:
                slot.restart = False
                await self._restart(slot)
            if slot.redeploy_since is not None and not slot.dirty and slot.serving is not None:
                seen, slot.redeploy_since = slot.redeploy_since, None
                say(self.store, slot.name, "granted files changed: redeploying (no build needed)")
                # Today's files, also after a rollback (whose kept build has its own copy).
                redeploy = dataclasses.replace(slot.serving, trigger_time=seen, files_root=None)
                await self._deploy(slot, redeploy)
            if not slot.dirty or slot.spec is None or slot.disabled:
                continue
            slot.dirty, trigger, slot.dirty_since = False, slot.dirty_since, None
            slot.redeploy_since = None  # the build's deploy stages the files as they are then
            spec = slot.spec
            try:
                async with self._build_slots:
                    started = time.monotonic()
                    slot.building = asyncio.create_task(self.builder.build(spec, trigger_time=trigger))
                    try:
                        built = await slot.building
                    finally:
                        slot.building = None
                    took_ms = (time.monotonic() - started) * 1000
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the worker itself is stopping (the build was cancelled with it)
                # A newer edit cancelled this build: build again, counting from the first edit.
                if trigger is not None:
                    slot.mark_dirty(trigger)
                say(self.store, spec.name, "build cancelled: a newer edit arrived; building again")
                continue
            except BuildError as err:
                say(self.store, spec.name, f"build failed: {one_line(str(err))}", level="error")
                continue
            except Exception as err:  # a bug in a build step must not end the app's worker
                log.exception("build of %s crashed", spec.name)
                say(self.store, spec.name, f"build crashed: {err!r} (run with --debug)", level="error")
                continue
            if slot.dirty:
                say(
                    self.store,
                    spec.name,
                    f"build {built.short_digest} superseded by a newer edit; rebuilding",
                )
                continue
            say(self.store, spec.name, f"built {built.short_digest} in {took_ms:.0f} ms")
            await self._deploy(slot, built)

    async def _deploy(self, slot: AppSlot, built: BuiltApp, via: DeployVia | None = None) -> None:
        name = built.spec.name
        self.store.dispatch(a.DeployStarted(app=name, digest=built.digest, ts=time.time()))
        try:
            result = await (via() if via is not None else self.target.deploy(built))
        except UnsupportedApp as err:
            self.store.dispatch(a.AppUnsupported(app=name, reason=str(err), ts=time.time()))
            say(self.store, name, f"not hosted on {self.target.name}: {one_line(str(err))}", level="warn")
            return
        except WasmdevError as err:
            self.store.dispatch(a.DeployFailed(app=name, digest=built.digest, error=str(err), ts=time.time()))
            say(self.store, name, f"deploy failed: {one_line(str(err))}", level="error")
            return
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.exception("deploy of %s crashed", name)
            error = f"deploy to {self.target.name} crashed: {err!r}\n  fix: run with --debug and report it"
            self.store.dispatch(a.DeployFailed(app=name, digest=built.digest, error=error, ts=time.time()))
            say(self.store, name, one_line(error), level="error")
            return
        now = time.time()
        e2s = (now - built.trigger_time) * 1000 if built.trigger_time is not None else None
        slot.serving = built
        self.store.dispatch(
            a.VersionServing(
                app=name,
                digest=built.digest,
                urls=result.urls,
                ts=now,
                edit_to_serving_ms=e2s,
                notes=result.notes,
            )
        )
        where = " ".join(result.urls) or "(no HTTP route)"
        timing = f" (edit→serving {e2s:.0f} ms)" if e2s is not None else ""
        say(self.store, name, f"serving {built.short_digest} at {where}{timing}")
        for note in result.notes:
            if note not in slot.notes_said:
                say(self.store, name, note, level="warn")
        slot.notes_said = result.notes
        await self.timetravel.deployed(built, served_at=now, edit_to_serving_ms=e2s)

    async def _roll_back(self, slot: AppSlot) -> None:
        """Deploy the rollbacks asked for since the worker last looked (oldest first)."""
        while slot.rollbacks:
            pending = slot.rollbacks.pop(0)
            if pending.served.done():
                continue
            await self._deploy(slot, pending.built, pending.via)
            if not pending.served.done():
                pending.served.set_result(slot.serving is pending.built)

    async def _restart(self, slot: AppSlot) -> None:
        if slot.serving is None:
            slot.mark_dirty(None)  # nothing serving yet: a restart is a build
            return
        say(self.store, slot.name, "restarting")
        with contextlib.suppress(Exception):
            await self.target.remove(slot.name)
        await self._deploy(slot, slot.serving)
