"""The engine's own lines in the log (stream SYSTEM): what it built, deployed, removed, and why.

Every part of the dev loop reports the same way, so the TUI and the headless printer tell one story.
"""

from __future__ import annotations

import time

from devenv.model import LogLine, LogStream
from devenv.store import actions as a
from devenv.store.store import Store


def one_line(text: str) -> str:
    """An error's lines joined for a one-line log entry ("what — fix: …")."""
    return " — ".join(part.strip() for part in text.splitlines() if part.strip())


def say(store: Store, app: str, text: str, level: str = "info") -> None:
    """One SYSTEM log line about ``app`` ("" for the workspace as a whole)."""
    store.dispatch(
        a.LogEmitted(LogLine(ts=time.time(), app=app, stream=LogStream.SYSTEM, text=text, level=level))
    )
