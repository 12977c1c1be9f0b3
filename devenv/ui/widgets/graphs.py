"""Latency and resource graphs for the selected app.

Each graph holds both a plotext chart and a one-line Sparkline; the layout's CSS decides which one
shows (side-by-side and metrics draw charts, the logs layout squeezes graphs to one line). The
app hands each graph plain numbers; none of them reads the store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline, Static
from textual_plotext import PlotextPlot

from devenv.model import ResourceSample
from devenv.store.buffers import LatencySummary
from devenv.timefmt import EMPTY
from devenv.ui.format import format_bytes, format_ms, format_percent

MIB = 1024 * 1024


def finite_points(
    values: Sequence[float | None], step_s: float, end_s: float = 0.0
) -> tuple[list[float], list[float]]:
    """(x, y) for the values that exist; x counts seconds back from now (…, -2, -1, 0)."""
    n = len(values)
    xs: list[float] = []
    ys: list[float] = []
    for i, value in enumerate(values):
        if value is None or math.isnan(value):
            continue
        xs.append(end_s - (n - 1 - i) * step_s)
        ys.append(value)
    return xs, ys


def spark_values(values: Sequence[float | None]) -> list[float]:
    """Gaps become zero: a sparkline has no way to draw "no data" and zero reads as idle."""
    return [0.0 if v is None or math.isnan(v) else float(v) for v in values]


class GraphPanel(Vertical):
    """A title line with the current numbers, a chart, a one-line sparkline and a note line."""

    DEFAULT_CSS = """
    GraphPanel {
        height: 1fr;
        border: round $panel-lighten-2;
        padding: 0 1;
    }
    GraphPanel > .graph-title { width: 1fr; text-style: bold; text-wrap: nowrap; text-overflow: ellipsis; }
    GraphPanel > .graph-spark { display: none; }
    GraphPanel > .graph-note { display: none; color: $warning; }
    GraphPanel.-noted > .graph-note { display: block; }
    GraphPanel.-noted > .graph-plot, GraphPanel.-noted > .graph-spark { display: none; }
    """

    title_prefix = ""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        # Held, not queried: the app may update a graph before its children mount or after
        # they unmount (shutdown), and an update then must be a harmless no-op.
        self._title = Label(self.title_prefix, classes="graph-title")
        self._chart = PlotextPlot(classes="graph-plot")
        self._sparkline = Sparkline([], classes="graph-spark")
        self._note = Static("", classes="graph-note")
        self._title_shown = self.title_prefix
        self._note_shown = ""
        self._plotted: object = None

    def compose(self) -> ComposeResult:
        yield self._title
        yield self._chart
        yield self._sparkline
        yield self._note

    @property
    def title_text(self) -> str:
        return str(self._title.content)

    @property
    def note_text(self) -> str:
        return str(self._note.content) if self.has_class("-noted") else ""

    # Each setter skips unchanged values: an update, even to the same text, costs a repaint,
    # and the app calls these every second.
    def _set_title(self, text: str) -> None:
        if text != self._title_shown:
            self._title_shown = text
            self._title.update(text)

    def _set_note(self, note: str) -> None:
        if note != self._note_shown:
            self._note_shown = note
            self._note.update(note)
            self.set_class(bool(note), "-noted")

    def _plot(self, series: list[tuple[str, list[float], list[float]]], window_s: float, ylabel: str) -> None:
        if (series, window_s, ylabel) == self._plotted:
            return
        self._plotted = (series, window_s, ylabel)
        chart = self._chart
        plt = chart.plt
        plt.clear_figure()
        for label, xs, ys in series:
            if xs:
                # A legend only tells lines apart; with one line it would just cover the data.
                plt.plot(xs, ys, label=label if len(series) > 1 else None, marker="braille")
        plt.xlim(-window_s, 0)
        top = max((max(ys) for _, _, ys in series if ys), default=0.0)
        plt.ylim(0, top * 1.15 if top > 0 else 1)
        plt.ylabel(ylabel)
        chart.refresh()

    def _spark(self, values: list[float]) -> None:
        if values != self._sparkline.data:
            self._sparkline.data = values


class LatencyGraph(GraphPanel):
    title_prefix = "Latency"

    def show(
        self,
        app: str | None,
        summary: LatencySummary | None,
        p50: Sequence[float],
        p95: Sequence[float],
        bucket_s: float,
    ) -> None:
        if app is None or summary is None:
            self._set_title("Latency: no app selected")
            self._set_note("Select an app to see its request latency.")
            return
        self._set_title(
            f"Latency {app}  p50 {format_ms(summary.p50_ms)}  p95 {format_ms(summary.p95_ms)}"
            f"  {summary.requests_per_second:.1f} req/s"
            + (f"  {summary.errors} errors" if summary.errors else "")
        )
        if summary.count == 0:
            self._set_note("No requests in the window yet.")
            return
        self._set_note("")
        window = len(p95) * bucket_s
        x50, y50 = finite_points(p50, bucket_s)
        x95, y95 = finite_points(p95, bucket_s)
        self._plot([("p50", x50, y50), ("p95", x95, y95)], window, "ms")
        self._spark(spark_values(p95))


class ResourceGraph(GraphPanel):
    """CPU (kind "cpu", percent of one core) or memory (kind "memory", bytes)."""

    def __init__(self, kind: str, *, id: str | None = None, classes: str | None = None) -> None:
        if kind not in ("cpu", "memory"):
            raise ValueError(f"unknown resource graph kind {kind!r}; expected 'cpu' or 'memory'")
        self.kind = kind
        self.title_prefix = "CPU" if kind == "cpu" else "Memory"
        super().__init__(id=id, classes=classes)

    def show(
        self, app: str | None, samples: Sequence[ResourceSample], note: str, now: float, window_s: float
    ) -> None:
        label = self.title_prefix
        if app is None:
            self._set_title(f"{label}: no app selected")
            self._set_note("Select an app to see its resource use.")
            return
        values = [self._value(s) for s in samples]
        current = next((v for v in reversed(values) if v is not None), None)
        shown = EMPTY if note else self._format(current)
        source = f"  ({samples[-1].source})" if samples and not note else ""
        self._set_title(f"{label} {app}  {shown}{source}")
        if note:
            # Zeros would claim the app uses nothing; the note says why there is no number.
            self._set_note(note)
            return
        if current is None:
            self._set_note("No samples yet.")
            return
        self._set_note("")
        points = [(s.ts - now, v) for s, v in zip(samples, values, strict=True) if v is not None]
        xs = [x for x, _ in points]
        scale = 1.0 if self.kind == "cpu" else 1 / MIB
        ys = [y * scale for _, y in points]
        self._plot([(label, xs, ys)], window_s, "%" if self.kind == "cpu" else "MiB")
        self._spark(spark_values(ys))

    def _value(self, sample: ResourceSample) -> float | None:
        if self.kind == "cpu":
            return sample.cpu_percent
        return float(sample.memory_bytes) if sample.memory_bytes is not None else None

    def _format(self, value: float | None) -> str:
        return format_percent(value) if self.kind == "cpu" else format_bytes(value)
