"""The build-failure panel: the failing command, the compiler's output and what is still serving.

It is open while the app's latest build failed and closes by itself when the next build
succeeds (the app hands it ``None`` then), so nobody has to dismiss a stale error.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Label, Static

from devenv.model import AppState, BuildStatus, EngineState
from devenv.timefmt import format_age
from devenv.ui.format import short_digest


def failing_app(state: EngineState, selected: str | None) -> AppState | None:
    """The selected app if its build failed, else the first failing app by name."""
    if selected is not None:
        app = state.apps.get(selected)
        if app is not None and app.build.status is BuildStatus.FAILED:
            return app
    for name in sorted(state.apps):
        if state.apps[name].build.status is BuildStatus.FAILED:
            return state.apps[name]
    return None


def serving_line(app: AppState, now: float) -> str:
    if app.serving_digest:
        since = f" (for {format_age(now - app.serving_since)})" if app.serving_since is not None else ""
        return f"Still serving the previous version {short_digest(app.serving_digest)}{since}."
    return "Nothing is serving: this app has not built successfully yet."


class BuildErrorPanel(Vertical):
    DEFAULT_CSS = """
    BuildErrorPanel {
        display: none;
        height: auto;
        max-height: 45%;
        border: heavy $error;
        border-title-color: $error;
        padding: 0 1;
    }
    BuildErrorPanel.-open { display: block; }
    BuildErrorPanel > .build-error-command { color: $text-muted; }
    BuildErrorPanel > .build-error-reason { text-style: bold; }
    BuildErrorPanel > .build-error-serving { color: $warning; }
    BuildErrorPanel > VerticalScroll { height: auto; max-height: 16; background: $surface; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.app_name: str | None = None
        self.command = ""
        self.output = ""
        self._build_shown: tuple[object, ...] = ()  # which failed build the panel shows
        self._serving_shown = ""
        self._reason = Label("", classes="build-error-reason")
        self._command = Label("", classes="build-error-command")
        self._serving = Label("", classes="build-error-serving")
        self._output = Static("", classes="build-error-output")

    def compose(self) -> ComposeResult:
        yield self._reason
        yield self._command
        yield self._serving
        with VerticalScroll():
            yield self._output

    @property
    def serving_text(self) -> str:
        return str(self._serving.content)

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    def show(self, app: AppState | None, now: float) -> None:
        if app is None:
            self.app_name = None
            self._build_shown = ()
            if self.has_class("-open"):
                self.remove_class("-open")
            return
        # The serving line's age moves every second; the (up to 16 KB) compiler output only
        # changes with the next failed build, so it is re-rendered only then.
        serving = serving_line(app, now)
        if serving != self._serving_shown:
            self._serving_shown = serving
            self._serving.update(serving)
        build = app.build
        key = (app.name, build.finished_at, build.command)
        if key == self._build_shown:
            return
        self._build_shown = key
        self.app_name = app.name
        self.command = build.command
        self.output = build.output
        self.border_title = f"Build failed: {app.name}"
        self._reason.update(Text(build.error or "the build command failed"))
        self._command.update(Text(f"$ {build.command}"))
        # Text, not markup: compiler output is full of [brackets].
        self._output.update(Text(build.output.rstrip() or "(no output)"))
        self.add_class("-open")
