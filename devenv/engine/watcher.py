"""File watching: watchfiles underneath, Tilt-style coalescing on top.

watchfiles hands over raw batches almost as soon as the kernel reports them (a short ``step``), so
the time the first event of an edit was seen is known to within a few milliseconds; that time is
where edit-to-serving starts counting. The ``Coalescer`` then merges batches the way Tilt's
``internal/fsevent/coalesce.go`` does: once something changed, wait until nothing has changed
for a quiet period, but never longer than a cap after the first event, so a formatter rewriting
200 files yields one batch (one build per app) and a process that never stops writing still
gets its changes through.

Paths under build-output and tooling directories are dropped before coalescing, so a build that
writes target/ does not keep the quiet timer running or schedule a build of its own. So are paths
the owner's ``relevant`` filter drops (the dev loop keeps only paths some app watches, grants or
is defined by): a log file written every 20 ms would otherwise hold every build to the cap.

A folder that appears (``cp -r app copy``, ``mkdir src/new && …``) is walked and its files are
reported too: the kernel watch on a new folder is only added after it exists, so watchfiles
reports the folder but can miss files written into it right away.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import anyio
import watchfiles

from devenv.engine.changeset import is_ignored


@dataclass(frozen=True)
class FileBatch:
    paths: frozenset[Path]
    first_seen: float  # time.time() when the earliest event in the batch was seen
    last_seen: float


class Coalescer:
    """Merges raw batches: emit after ``quiet_s`` without events, or ``cap_s`` after the first."""

    def __init__(self, quiet_s: float = 0.05, cap_s: float = 1.0) -> None:
        self.quiet_s = quiet_s
        self.cap_s = max(cap_s, quiet_s)
        self._queue: asyncio.Queue[tuple[float, frozenset[Path]]] = asyncio.Queue(maxsize=10_000)

    def feed(self, paths: Iterable[Path], seen: float | None = None) -> None:
        """Add a raw batch (from the event loop's thread)."""
        batch = frozenset(paths)
        if not batch:
            return
        item = (seen if seen is not None else time.time(), batch)
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:  # far behind: merge into what is queued rather than grow
            old_seen, old = self._queue.get_nowait()
            self._queue.put_nowait((min(old_seen, item[0]), old | batch))

    async def batches(self) -> AsyncIterator[FileBatch]:
        loop = asyncio.get_running_loop()
        while True:
            first_seen, paths = await self._queue.get()
            collected = set(paths)
            last_seen = first_seen
            deadline = loop.time() + self.cap_s
            while True:
                timeout = min(self.quiet_s, deadline - loop.time())
                if timeout <= 0:
                    break
                try:
                    seen, more = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
                collected |= more
                last_seen = max(last_seen, seen)
                first_seen = min(first_seen, seen)
            yield FileBatch(frozenset(collected), first_seen, last_seen)


def files_under(folders: Iterable[str], keep: Callable[[watchfiles.Change, str], bool]) -> list[Path]:
    """Every file under ``folders`` that ``keep`` accepts (blocking: run it in a thread)."""
    added = watchfiles.Change.added
    found: list[Path] = []
    for top in folders:
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if keep(added, os.path.join(folder, d))]
            found += [Path(folder, f) for f in files if keep(added, os.path.join(folder, f))]
    return found


def _keep(root: Path) -> Callable[[watchfiles.Change, str], bool]:
    """A watchfiles filter dropping build outputs and editor files (judged relative to root, so a
    workspace that itself lives under a folder named like an output dir is still watched)."""

    def keep(_change: watchfiles.Change, raw: str) -> bool:
        path = Path(raw)
        try:
            rel = path.relative_to(root)
        except ValueError:
            rel = path
        return not is_ignored(rel)

    return keep


class Watcher:
    """Watches ``root`` recursively and yields coalesced FileBatches.

    ``start()`` returns once the kernel watches are in place (events after it are not missed).
    """

    def __init__(
        self,
        root: Path,
        *,
        quiet_s: float = 0.05,
        cap_s: float = 1.0,
        on_error: Callable[[BaseException], None] | None = None,
        relevant: Callable[[list[Path]], list[Path]] | None = None,
    ) -> None:
        self.root = root
        self.on_error = on_error
        self.relevant = relevant
        self.coalescer = Coalescer(quiet_s, cap_s)
        self._stop = anyio.Event()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name=f"watch {self.root}")
        # awatch creates its kernel watcher synchronously on the first step of the generator,
        # before its first await; one turn of the loop is enough for it to be in place.
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    async def _pump(self) -> None:
        keep = _keep(self.root)
        try:
            async for changes in watchfiles.awatch(
                self.root,
                watch_filter=keep,
                step=5,  # hand batches over fast; coalescing is ours
                debounce=int(self.coalescer.cap_s * 1000),
                stop_event=self._stop,
                rust_timeout=1_000,
                ignore_permission_denied=True,
            ):
                seen = time.time()
                paths = [Path(p) for _, p in changes]
                folders = [p for c, p in changes if c is watchfiles.Change.added and os.path.isdir(p)]
                if folders:
                    paths += await asyncio.to_thread(files_under, folders, keep)
                if self.relevant is not None:
                    paths = self.relevant(paths)
                self.coalescer.feed(paths, seen)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the directory vanished, inotify limits, …: told to the owner
            self.error = err
            if self.on_error is not None:
                self.on_error(err)

    def batches(self) -> AsyncIterator[FileBatch]:
        return self.coalescer.batches()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
