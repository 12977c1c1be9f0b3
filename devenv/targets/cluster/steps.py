"""Bootstrap steps as the user sees them: pending → running → done/failed/skipped.

A ``StepReporter`` turns ``async with reporter.step(key, title)`` blocks into ``StepState``
values with wall-clock start/finish times (the UI shows elapsed time from them) and hands each to
a sink: the store (as ``BootstrapStepChanged``) under ``wasmdev up``, a printer under
``wasmdev cluster create``. A step that raises is marked failed with the error's reason and fix.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

from devenv.errors import WasmdevError
from devenv.model import StepState, StepStatus

StepSink = Callable[[StepState], None]


class StepHandle:
    def __init__(self, reporter: StepReporter, state: StepState) -> None:
        self._reporter = reporter
        self.state = state
        self.final_status = StepStatus.DONE

    def note(self, detail: str) -> None:
        """Progress while running ("1/3 nodes Ready"), emitted now; repeated notes are dropped."""
        if detail == self.state.detail:
            return
        self.state = replace(self.state, detail=detail)
        self._reporter.emit(self.state)

    def done(self, detail: str) -> None:
        """The outcome, shown with the finished step (not emitted as progress)."""
        self.state = replace(self.state, detail=detail)

    def skip(self, detail: str) -> None:
        self.final_status = StepStatus.SKIPPED
        self.state = replace(self.state, detail=detail)


class StepReporter:
    """Emits each step's state changes to ``sink`` with wall-clock start/finish times."""

    def __init__(self, sink: StepSink, clock: Callable[[], float] = time.time) -> None:
        self.sink = sink
        self.clock = clock

    def emit(self, state: StepState) -> None:
        self.sink(state)

    def plan(self, steps: tuple[tuple[str, str], ...]) -> None:
        for key, title in steps:
            self.emit(StepState(key=key, title=title))

    @asynccontextmanager
    async def step(self, key: str, title: str) -> AsyncIterator[StepHandle]:
        handle = StepHandle(
            self, StepState(key=key, title=title, status=StepStatus.RUNNING, started_at=self.clock())
        )
        self.emit(handle.state)
        try:
            yield handle
        except WasmdevError as err:
            self.emit(
                replace(
                    handle.state,
                    status=StepStatus.FAILED,
                    finished_at=self.clock(),
                    detail=err.what,
                    fix=err.fix,
                )
            )
            raise
        except asyncio.CancelledError:
            self.emit(
                replace(handle.state, status=StepStatus.FAILED, finished_at=self.clock(), detail="cancelled")
            )
            raise
        except Exception as exc:
            self.emit(
                replace(
                    handle.state,
                    status=StepStatus.FAILED,
                    finished_at=self.clock(),
                    detail=f"{type(exc).__name__}: {exc}",
                )
            )
            raise
        self.emit(replace(handle.state, status=handle.final_status, finished_at=self.clock()))
