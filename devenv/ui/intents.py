"""User intents: the actions that become store dispatches (rebuild, restart, pause, resume,
shutdown) and the URL actions. A mixin of WasmdevApp, kept apart from the widget plumbing."""

from __future__ import annotations

import webbrowser
from functools import partial
from typing import TYPE_CHECKING

from devenv.store import actions as a

if TYPE_CHECKING:
    from textual.app import App

    from devenv.store import Store

    _Base = App[None]
else:
    _Base = object


class IntentActions(_Base):
    store: Store
    selected_app: str | None
    shutdown_dispatched: bool

    def _dispatch(self, action: a.Action) -> None:
        self.store.dispatch(action)

    def rebuild(self, app: str | None) -> None:
        self._dispatch(a.RebuildRequested(app))
        self.notify(f"Rebuild requested: {app or 'all apps'}", timeout=2)

    def restart(self, app: str) -> None:
        self._dispatch(a.RestartRequested(app))
        self.notify(f"Restart requested: {app}", timeout=2)

    def _selected(self) -> str | None:
        """The selected app; None (and a warning saying so) when there is none."""
        if self.selected_app is None:
            self.notify("No app selected", severity="warning", timeout=2)
        return self.selected_app

    def action_rebuild_selected(self) -> None:
        if (app := self._selected()) is not None:
            self.rebuild(app)

    def action_rebuild_all(self) -> None:
        self.rebuild(None)

    def action_restart_selected(self) -> None:
        if (app := self._selected()) is not None:
            self.restart(app)

    def action_pause_watch(self) -> None:
        self._dispatch(a.WatchPaused())

    def action_resume_watch(self) -> None:
        self._dispatch(a.WatchResumed())

    def action_toggle_watch(self) -> None:
        if self.store.state.watching:
            self.action_pause_watch()
        else:
            self.action_resume_watch()

    # --- time travel -------------------------------------------------------------------------

    def roll_back(self, app: str, digest: str | None = None) -> None:
        self._dispatch(a.RollbackRequested(app, digest))
        target = f"build {digest[:12]}" if digest else "the previous build"
        self.notify(f"Rolling {app} back to {target}", timeout=2)

    def replay(self, app: str) -> None:
        self._dispatch(a.ReplayRequested(app))
        self.notify(f"Replaying the recorded requests of {app}", timeout=2)

    def load_test(self, app: str) -> None:
        self._dispatch(a.LoadTestRequested(app))
        self.notify(f"Load test of {app}: 10 s, 8 connections", timeout=3)

    def action_roll_back_selected(self) -> None:
        if (app := self._selected()) is not None:
            self.roll_back(app)

    def action_replay_selected(self) -> None:
        if (app := self._selected()) is not None:
            self.replay(app)

    def action_load_test_selected(self) -> None:
        if (app := self._selected()) is not None:
            self.load_test(app)

    def _selected_url(self) -> str | None:
        app = self.store.state.apps.get(self.selected_app) if self.selected_app else None
        if app is None or not app.urls:
            self.notify("The selected app has no URL yet", severity="warning", timeout=2)
            return None
        return app.urls[0]

    def action_open_url(self) -> None:
        if (url := self._selected_url()) is not None:
            self.open_url(url)

    def action_copy_url(self) -> None:
        if (url := self._selected_url()) is not None:
            self.copy_url(url)

    def open_url(self, url: str) -> None:
        # webbrowser may start a browser process and wait on it: keep that off the UI's loop.
        self.run_worker(partial(webbrowser.open, url), thread=True, name="open-url", group="open-url")
        self.notify(f"Opening {url}", timeout=2)

    def copy_url(self, url: str) -> None:
        self.copy_to_clipboard(url)
        self.notify(f"Copied {url}", timeout=2)

    async def action_quit(self) -> None:
        self.request_shutdown()
        self.exit()

    def request_shutdown(self) -> None:
        if not self.shutdown_dispatched:
            self.shutdown_dispatched = True
            self._dispatch(a.ShutdownRequested())
