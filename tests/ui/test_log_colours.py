"""The log view's colours come from its CSS component classes: a layout's .tcss (or a theme)
restyles a stream or an app's colour without touching Python."""

from __future__ import annotations

from rich.color import Color
from textual.app import App, ComposeResult

from devenv.model import LogLine, LogStream
from devenv.ui.widgets.log_view import LogView


class _OneLog(App[None]):
    CSS = """
    LogView > .log-view--stderr { color: #00ff00; }
    LogView > .log-view--app-0 { color: #0000ff; text-style: none; }
    """

    def compose(self) -> ComposeResult:
        yield LogView()


def _segment(view: LogView, text: str):  # noqa: ANN202
    strip = view.render_line(0)
    return next(seg for seg in strip if text in seg.text)


async def test_a_stylesheet_restyles_a_stream_and_an_app() -> None:
    app = _OneLog()
    async with app.run_test(size=(100, 10)) as pilot:
        view = app.query_one(LogView)
        view.set_apps(["web"])
        view.append([LogLine(1.0, "web", LogStream.STDERR, "it broke")])
        await pilot.pause()
        view.render_lines(view.region.reset_offset)  # what a frame does first: the row width and style
        body = _segment(view, "it broke")
        name = _segment(view, "web")
        assert body.style is not None and body.style.color == Color.parse("#00ff00")
        assert name.style is not None and name.style.color == Color.parse("#0000ff") and not name.style.bold
