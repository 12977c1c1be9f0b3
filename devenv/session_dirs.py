"""Folders a wasmdev session makes for itself, named after its process id.

A session removes its folders when it ends, but one killed with SIGKILL (or by the OOM killer)
gets no chance to; the next session that makes the same kind of folder removes those whose
process is gone. A folder whose process is alive (another session, or a pid reused since) is
left alone, and so is another user's (not ours to remove).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["new_session_folder", "remove_dead_sessions"]


def new_session_folder(parent: Path | None, kind: str, label: str = "") -> Path:
    """A new folder ``<kind>-<pid>-[<label>-]<random>`` in ``parent`` (the temp folder when None),
    made after removing the folders of this kind that dead sessions left there."""
    where = Path(tempfile.gettempdir()) if parent is None else parent
    where.mkdir(parents=True, exist_ok=True)
    remove_dead_sessions(where, kind)
    prefix = f"{kind}-{os.getpid()}-" + (f"{label}-" if label else "")
    return Path(tempfile.mkdtemp(prefix=prefix, dir=where))


def remove_dead_sessions(parent: Path, kind: str) -> None:
    """Remove ``parent``'s ``<kind>-<pid>-*`` folders whose process no longer runs."""
    try:
        folders = list(parent.glob(f"{kind}-*-*"))
    except OSError:
        return
    for folder in folders:
        pid = folder.name.removeprefix(f"{kind}-").split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)) and _ours(folder):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _ours(folder: Path) -> bool:
    try:
        return folder.stat().st_uid == os.getuid()
    except OSError:
        return False
