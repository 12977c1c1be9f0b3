"""Shared helpers for the dashboard tests: app factories, a recorder of dispatched intents, and
waiting for a condition without sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input

from devenv.model import AppSpec, BuiltApp, ComponentSpec, HttpTrigger, Route
from devenv.store import Store
from devenv.store import actions as a
from devenv.ui.app import WasmdevApp

NOW = 1_800_000_000.0
SIZE = (160, 48)
INTENTS = (
    a.RebuildRequested,
    a.RestartRequested,
    a.WatchPaused,
    a.WatchResumed,
    a.LogsCleared,
    a.ShutdownRequested,
)


class Recorder:
    """Subscribes to a store and keeps the user intents dispatched into it."""

    def __init__(self, store: Store) -> None:
        self.actions: list[a.Action] = []
        store.subscribe(lambda _state, action: self._record(action))

    def _record(self, action: a.Action) -> None:
        if isinstance(action, INTENTS):
            self.actions.append(action)


def make_app(store: Store, **kwargs: object) -> WasmdevApp:
    kwargs.setdefault("clock", lambda: NOW)
    return WasmdevApp(store, **kwargs)  # type: ignore[arg-type]


def spec(name: str, components: tuple[str, ...] = ("main",)) -> AppSpec:
    root = Path("/ws") / name
    comps = {c: ComponentSpec(id=c, source=root / f"{c}.wasm") for c in components}
    triggers = tuple(HttpTrigger(Route(f"/{c}"), c) for c in components)
    return AppSpec(name, root / "spin.toml", components=MappingProxyType(comps), http_triggers=triggers)


def serve(store: Store, name: str, digest: str, ts: float, port: int = 3000) -> None:
    """Dispatch a successful build and the version going live, as the engine does."""
    app_spec = store.state.apps[name].spec
    assert app_spec is not None
    store.dispatch(a.BuildStarted(name, "make", ts - 1))
    store.dispatch(a.BuildSucceeded(name, BuiltApp(app_spec, digest, {}, ts), ts))
    store.dispatch(a.VersionServing(name, digest, (f"http://127.0.0.1:{port}/",), ts + 0.2, 850.0))


async def wait_until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Let the app run until ``condition`` holds; False if it never did within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await pilot.pause(0.02)
    return condition()


async def run_palette(pilot: Pilot, query: str, expect: str | None = None) -> None:
    """Open the command palette, type ``query`` and run the top hit (which must be ``expect``)."""
    app = pilot.app
    await pilot.press("ctrl+p")
    assert await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
    # The first characters are typed as keys; the rest is set in one go, because every key
    # press restarts the palette's search and typing whole titles made these tests crawl.
    await pilot.press(*query[:2])
    search = app.screen.query_one(Input)
    search.value = query
    search.cursor_position = len(query)
    results = app.screen.query_one(CommandList)
    wanted = expect or query

    def top_hit_is_wanted() -> bool:
        if results.option_count == 0:
            return False
        prompt = results.get_option_at_index(0).prompt
        title = str(getattr(prompt, "plain", prompt)).split("\n", 1)[0]  # the help text follows
        return title == wanted

    assert await wait_until(pilot, top_hit_is_wanted), f"palette did not offer {wanted!r} first"
    # Textual may or may not pre-highlight the first hit; move the highlight onto it either way.
    await pilot.pause()
    if results.highlighted is None:
        await pilot.press("down")
    while results.highlighted is not None and results.highlighted > 0:
        await pilot.press("up")
    assert await wait_until(pilot, lambda: results.highlighted == 0)
    await pilot.press("enter")
    assert await wait_until(pilot, lambda: not isinstance(app.screen, CommandPalette))
    await asyncio.sleep(0)
