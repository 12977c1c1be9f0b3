"""Target bootstrap progress: each step pending, running (with elapsed time), done or failed with
the reason and the fix. Shown while a target is being set up, so the screen is never frozen."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, ProgressBar, Static

from devenv.model import StepState, StepStatus
from devenv.timefmt import format_duration

FINISHED = (StepStatus.DONE, StepStatus.SKIPPED)
STEP_MARKS: dict[StepStatus, tuple[str, str]] = {
    StepStatus.PENDING: ("○", "dim"),
    StepStatus.RUNNING: ("◐", "bold cyan"),
    StepStatus.DONE: ("✓", "green"),
    StepStatus.FAILED: ("✗", "bold red"),
    StepStatus.SKIPPED: ("–", "dim"),
}


def bootstrap_visible(steps: Sequence[StepState]) -> bool:
    return bool(steps) and not all(step.status in FINISHED for step in steps)


def step_text(steps: Sequence[StepState], now: float) -> Text:
    text = Text()
    for step in steps:
        mark, style = STEP_MARKS[step.status]
        text.append(f" {mark} ", style)
        text.append(step.title, style if step.status is not StepStatus.PENDING else "dim")
        if step.status is StepStatus.RUNNING and step.started_at is not None:
            text.append(f"  {format_duration(now - step.started_at)}", "cyan")
        elif step.status is StepStatus.DONE and step.started_at and step.finished_at:
            text.append(f"  {format_duration(step.finished_at - step.started_at)}", "dim")
        if step.detail and step.status is not StepStatus.FAILED:
            text.append(f"  {step.detail}", "dim")
        text.append("\n")
        if step.status is StepStatus.FAILED:
            text.append(f"     reason: {step.detail or 'unknown'}\n", "red")
            if step.fix:
                text.append(f"     fix: {step.fix}\n", "yellow")
    text.rstrip()
    return text


class BootstrapPanel(Vertical):
    DEFAULT_CSS = """
    BootstrapPanel {
        display: none;
        height: auto;
        border: round $accent;
        padding: 0 1;
    }
    BootstrapPanel.-open { display: block; }
    BootstrapPanel > ProgressBar { margin: 0 0 1 0; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.text = ""
        self.title_text = ""
        self._title = Label("", classes="bootstrap-title")
        self._progress = ProgressBar(show_eta=False, classes="bootstrap-progress")
        self._steps = Static("", classes="bootstrap-steps")

    def compose(self) -> ComposeResult:
        yield self._title
        yield self._progress
        yield self._steps

    def show(self, steps: Sequence[StepState], target: str, now: float) -> None:
        if not bootstrap_visible(steps):
            if self.has_class("-open"):
                self.remove_class("-open")
            return
        done = sum(1 for s in steps if s.status in FINISHED)
        failed = any(s.status is StepStatus.FAILED for s in steps)
        title = f"{done}/{len(steps)} steps done" + ("; a step failed, see the fix below" if failed else "")
        body = step_text(steps, now)
        if body.plain == self.text and title == self.title_text and self.has_class("-open"):
            return
        self.border_title = f"Setting up the {target} target"
        self.title_text = title
        self._title.update(title)
        self._progress.update(total=len(steps), progress=done)
        self.text = body.plain
        self._steps.update(body)
        self.add_class("-open")
