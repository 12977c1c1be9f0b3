"""The command palette's wasmdev commands: every dashboard action, plus one entry per app and per
layout so "restart api" or "layout metrics" is a few keystrokes away.

The commands are listed by a plain function from the app's current state, so the palette always
offers what makes sense now (resume only while paused, URLs only for apps that serve one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from devenv.ui.app import WasmdevApp


@dataclass(frozen=True)
class PaletteCommand:
    title: str
    help: str
    callback: Callable[[], object]


def palette_commands(app: WasmdevApp) -> list[PaletteCommand]:
    state = app.store.state
    selected = app.selected_app
    commands = [
        PaletteCommand("Rebuild all apps", "Build and redeploy every app now", app.action_rebuild_all),
    ]
    if selected is not None:
        commands.append(
            PaletteCommand(
                f"Rebuild {selected}", "Build and redeploy the selected app", app.action_rebuild_selected
            )
        )
    if state.watching:
        commands.append(
            PaletteCommand("Pause watching", "Stop rebuilding on file changes", app.action_pause_watch)
        )
    else:
        commands.append(
            PaletteCommand("Resume watching", "Rebuild on file changes again", app.action_resume_watch)
        )
    commands += [
        PaletteCommand("Clear logs", "Empty the logs panel and the log buffer", app.action_clear_logs),
        PaletteCommand(
            "Filter logs", "Show only lines containing text (app:NAME for one app)", app.action_filter_logs
        ),
        PaletteCommand(
            "Toggle logs of the selected app only", "Hide other apps' lines", app.action_only_selected_app
        ),
        PaletteCommand("Next layout", "Cycle to the next layout", app.action_cycle_layout),
    ]
    for name in sorted(state.apps):
        commands.append(
            PaletteCommand(f"Rebuild app {name}", "Build and redeploy it", partial(app.rebuild, name))
        )
        commands.append(
            PaletteCommand(f"Restart app {name}", "Restart it on its target", partial(app.restart, name))
        )
        for url in state.apps[name].urls:
            commands.append(
                PaletteCommand(f"Open {name} in browser: {url}", "Open the URL", partial(app.open_url, url))
            )
            commands.append(
                PaletteCommand(
                    f"Copy URL of {name}: {url}", "Copy to the clipboard", partial(app.copy_url, url)
                )
            )
    commands += time_travel_commands(app)
    for layout in app.layouts.layouts.values():
        origin = "built-in" if layout.builtin else layout.origin
        help_text = f"{layout.description or 'layout'} ({origin})"
        commands.append(
            PaletteCommand(
                f"Switch layout: {layout.name}", help_text, partial(app.switch_layout, layout.name)
            )
        )
    commands.append(PaletteCommand("Quit wasmdev", "Stop watching and close the dashboard", app.action_quit))
    return commands


def time_travel_commands(app: WasmdevApp) -> list[PaletteCommand]:
    """Roll back (to the previous or any kept build), replay and load-test the selected app."""
    commands = [
        PaletteCommand(
            "Show/hide time travel",
            "Kept builds, replays and load tests (key h)",
            app.action_toggle_timetravel,
        )
    ]
    selected = app.selected_app
    state = app.store.state.apps.get(selected) if selected is not None else None
    if selected is None or state is None:
        return commands
    commands += [
        PaletteCommand(
            f"Roll back {selected} to the previous build",
            "Serve the kept build before this one (key b)",
            partial(app.roll_back, selected),
        ),
        PaletteCommand(
            f"Replay recorded requests of {selected}",
            "Compare the responses with what serves now (key v)",
            partial(app.replay, selected),
        ),
        PaletteCommand(
            f"Load test {selected}",
            "10 s, 8 connections; the graphs move live (key t)",
            partial(app.load_test, selected),
        ),
    ]
    for kept in state.history:
        if kept.digest != state.serving_digest:
            commands.append(
                PaletteCommand(
                    f"Roll back {selected} to {kept.short_digest}",
                    f"{'served' if kept.served else 'never served'}; changed {', '.join(kept.changed[:3]) or '—'}",
                    partial(app.roll_back, selected, kept.digest),
                )
            )
    return commands


class WasmdevCommands(Provider):
    async def discover(self) -> Hits:
        for command in palette_commands(self._wasmdev_app):
            yield DiscoveryHit(command.title, command.callback, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in palette_commands(self._wasmdev_app):
            score = matcher.match(command.title)
            if score > 0:
                yield Hit(score, matcher.highlight(command.title), command.callback, help=command.help)

    @property
    def _wasmdev_app(self) -> WasmdevApp:
        from devenv.ui.app import WasmdevApp

        app = self.app
        if not isinstance(app, WasmdevApp):  # only ever installed on WasmdevApp
            raise TypeError("WasmdevCommands serves WasmdevApp only")
        return app
