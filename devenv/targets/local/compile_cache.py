"""Compiled code cached on disk, so a restart (or a rebuild that produced the same bytes) does not
compile again.

Key: sha256 over the wasm bytes, the wasmtime version and the engine configuration
(``WasmRuntime.config_key``). Entries are wasmtime's own serialized form; loading one is a few
milliseconds against seconds of compiling for a large component. A stale or foreign entry is
detected by wasmtime on load and simply recompiled and replaced.

Hashing a componentize-py component (~18 MB) costs ~12 ms, reading it a few more: a large part of
a restart's budget. ``component_file`` therefore remembers, per file, which content key its bytes
had, keyed by the file's identity and timestamps (path, device, inode, size, mtime and ctime in
nanoseconds), as git's index does. Any write to the file changes its ctime (which no tool can set
back), so a remembered key is only reused for the very bytes it was computed from; and, like git's
"racy clean" rule, a key is only remembered for a file whose timestamps are older than
``_SETTLED_NS``, so a write in the same clock tick as the hashing can never be missed.

Both the in-memory memo and the directory are bounded by bytes (an entry's size is its
serialized code, which is also roughly what it maps): a componentize-py component compiles to
~36 MB on disk, so counting entries bounded nothing. What a rollback needs is never pruned: the
entries of the last ``keep_builds`` builds of each app (``keep``); past the budget, the least
recently used of the rest go first.

The cache directory belongs to the user; wasmtime's deserialize trusts its input, so never point
``directory`` at files someone else can write.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import wasmtime
from wasmtime.component import Component

T = TypeVar("T", wasmtime.Module, Component)

MEMO_BYTES = 384 * 1024 * 1024  # compiled code kept in memory (a big component's is ~36-100 MB)
DISK_BYTES = 1024 * 1024 * 1024  # entries on disk, past which unpinned ones are pruned
_SETTLED_NS = 2_000_000_000  # a file's timestamps must be this old before its key is remembered


class CompileCache:
    def __init__(
        self,
        directory: Path,
        config_key: str,
        *,
        keep_builds: int = 10,
        memo_bytes: int = MEMO_BYTES,
        disk_bytes: int = DISK_BYTES,
    ) -> None:
        self.directory = directory
        self.config_key = config_key
        self.keep_builds = keep_builds
        self.memo_bytes = memo_bytes
        self.disk_bytes = disk_bytes
        self._memo_size = 0
        self._sizes: dict[str, int] = {}  # memo key -> bytes
        self._kept: dict[str, deque[frozenset[str]]] = {}  # app -> entry keys of its last builds
        self._kept_lock = threading.Lock()  # two apps' deploys keep and prune from their threads
        self._tracked = threading.local()
        self.compiled = 0  # how many times this cache had to compile (a test and a bench read it)
        self.loaded = 0  # how many entries came from disk
        # key -> (engine, compiled); holding the engine keeps ``id(engine)`` from being reused.
        self._memo: OrderedDict[str, tuple[wasmtime.Engine, object]] = OrderedDict()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def tracking(self) -> Iterator[set[str]]:
        """Collect the entry keys this thread uses meanwhile (a build's compiled code)."""
        keys: set[str] = set()
        self._tracked.keys = keys
        try:
            yield keys
        finally:
            self._tracked.keys = None

    def keep(self, app: str, keys: frozenset[str]) -> None:
        """``keys`` are the entries of ``app``'s newest build: kept on disk with the previous
        ``keep_builds - 1`` builds' for rollback. Then prunes the directory to its budget."""
        with self._kept_lock:
            self._kept.setdefault(app, deque(maxlen=self.keep_builds)).append(keys)
        self.prune()

    def forget(self, app: str) -> None:
        with self._kept_lock:
            self._kept.pop(app, None)

    def prune(self) -> None:
        """Delete the least recently used entries not kept for rollback until the directory is
        within ``disk_bytes``."""
        with self._kept_lock:
            pinned = {k for builds in self._kept.values() for keys in builds for k in keys}
        entries: list[tuple[float, int, Path]] = []
        total = 0
        try:
            with os.scandir(self.directory) as it:
                for item in it:
                    if not item.name.endswith(".cwasm"):
                        continue
                    with contextlib.suppress(OSError):
                        st = item.stat()
                        total += st.st_size
                        if item.name.split(".", 1)[0] not in pinned:
                            used = max(st.st_atime, st.st_mtime)
                            entries.append((used, st.st_size, Path(item.path)))
        except OSError:
            return
        entries.sort()
        for _, size, path in entries:
            if total <= self.disk_bytes:
                break
            with contextlib.suppress(OSError):
                path.unlink()  # a process mapping it keeps its mapping; a later load compiles
                total -= size

    @property
    def memo_size(self) -> int:
        return self._memo_size

    def key(self, wasm: bytes, kind: str) -> str:
        h = hashlib.sha256()
        h.update(self.config_key.encode())
        h.update(b"\0" + kind.encode() + b"\0")
        h.update(wasm)
        return h.hexdigest()

    def path_for(self, key: str, kind: str) -> Path:
        return self.directory / f"{key}.{kind}.cwasm"

    def module(self, engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
        """A core module compiled for ``engine``, from memory, disk, or a fresh compile."""
        return self._get(engine, wasm, "module", wasmtime.Module, wasmtime.Module.deserialize_file)

    def component(self, engine: wasmtime.Engine, wasm: bytes) -> Component:
        """A component compiled for ``engine``, from memory, disk, or a fresh compile."""
        return self._get(engine, wasm, "component", Component, Component.deserialize_file)

    def component_file(self, engine: wasmtime.Engine, path: Path, wasm: bytes | None = None) -> Component:
        """``component`` for the file at ``path``, hashing it only when its remembered content key
        may be stale (see the module's note). ``wasm``: its bytes, if the caller already has them.
        Raises OSError if the file cannot be read."""
        stat_name = self._stat_name(path, "component")
        key = self._remembered_key(stat_name)
        if key is not None and self.path_for(key, "component").is_file():
            try:
                return self._get(engine, b"", "component", Component, Component.deserialize_file, key=key)
            except wasmtime.WasmtimeError:
                pass  # the entry is unusable: hash and compile from the bytes below
        data = wasm if wasm is not None else path.read_bytes()
        key = self.key(data, "component")
        compiled = self._get(engine, data, "component", Component, Component.deserialize_file, key=key)
        # Re-checked after the read: a write between the stat and the read must not be recorded
        # under the older identity.
        if stat_name is not None and self._settled(path) and self._stat_name(path, "component") == stat_name:
            self._write_atomic(self.directory / "by-stat" / stat_name, key.encode())
        return compiled

    def _stat_name(self, path: Path, kind: str) -> str | None:
        try:
            st = os.stat(path)
            real = os.path.realpath(path)
        except OSError:
            return None
        identity = (
            f"{self.config_key}\0{kind}\0{real}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}"
            f"\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
        )
        return hashlib.sha256(identity.encode()).hexdigest()

    def _remembered_key(self, stat_name: str | None) -> str | None:
        if stat_name is None:
            return None
        try:
            key = (self.directory / "by-stat" / stat_name).read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None
        return key if len(key) == 64 and all(c in "0123456789abcdef" for c in key) else None

    @staticmethod
    def _settled(path: Path) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            return False
        return time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS

    def _get(
        self,
        engine: wasmtime.Engine,
        wasm: bytes,
        kind: str,
        compile_: Callable[[wasmtime.Engine, bytes], T],
        load: Callable[[wasmtime.Engine, str], T],
        key: str | None = None,
    ) -> T:
        """``key`` given with empty ``wasm``: load from memory or disk only (WasmtimeError if
        the entry cannot be loaded)."""
        key = key if key is not None else self.key(wasm, kind)
        tracked = getattr(self._tracked, "keys", None)
        if tracked is not None:
            tracked.add(key)
        memo_key = f"{id(engine)}:{key}"
        with self._lock:
            hit = self._memo.get(memo_key)
            if hit is not None and hit[0] is engine:
                self._memo.move_to_end(memo_key)
                return hit[1]  # type: ignore[return-value]
        path = self.path_for(key, kind)
        compiled: T | None = None
        if path.is_file():
            try:
                # Mapped, not read: a componentize-py component's code is ~100 MB. Entries are
                # only ever replaced by rename, so a mapping never sees a file change under it.
                compiled = load(engine, str(path))
                self.loaded += 1
                with contextlib.suppress(OSError):
                    # Used: the last to be pruned. The access time only: the write time says
                    # when the entry was made.
                    os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))
            except (wasmtime.WasmtimeError, OSError):
                compiled = None  # written by another wasmtime or truncated: compile it again
        if compiled is None:
            if not wasm:
                raise wasmtime.WasmtimeError(f"no usable compiled entry for {key}")
            compiled = compile_(engine, wasm)  # raises WasmtimeError for invalid wasm
            self.compiled += 1
            self._write_atomic(path, bytes(compiled.serialize()))
        try:
            size = path.stat().st_size
        except OSError:
            size = len(wasm)
        with self._lock:
            if memo_key not in self._memo:
                self._memo_size += size
                self._sizes[memo_key] = size
            self._memo[memo_key] = (engine, compiled)
            # The newest stays even if it alone is over budget: it is about to serve.
            while self._memo_size > self.memo_bytes and len(self._memo) > 1:
                old, _ = self._memo.popitem(last=False)
                self._memo_size -= self._sizes.pop(old, 0)
        return compiled

    def _write_atomic(self, path: Path, data: bytes) -> None:
        # A cache that cannot be written only costs a compile next time; never fail the deploy.
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: a concurrent reader sees the old entry or the whole new one
        except OSError:
            # A full disk must not also leave a partial entry (up to ~100 MB) behind per deploy.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
