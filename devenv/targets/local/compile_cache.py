"""Compiled code cached on disk, so a restart (or a rebuild that produced the same bytes) does not
compile again.

Key: sha256 over the wasm bytes, the wasmtime version and the engine configuration
(``WasmRuntime.config_key``). Entries are wasmtime's own serialized form; loading one is a few
milliseconds against seconds of compiling for a large component. A stale or foreign entry is
detected by wasmtime on load and simply recompiled and replaced.

The cache directory belongs to the user; wasmtime's deserialize trusts its input, so never point
``directory`` at files someone else can write.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import wasmtime
from wasmtime.component import Component

T = TypeVar("T", wasmtime.Module, Component)

_MEMO_ENTRIES = 32  # compiled objects kept in memory; enough for every component of a workspace


class CompileCache:
    def __init__(self, directory: Path, config_key: str) -> None:
        self.directory = directory
        self.config_key = config_key
        self.compiled = 0  # how many times this cache had to compile (a test and a bench read it)
        self.loaded = 0  # how many entries came from disk
        # key -> (engine, compiled); holding the engine keeps ``id(engine)`` from being reused.
        self._memo: OrderedDict[str, tuple[wasmtime.Engine, object]] = OrderedDict()
        self._lock = threading.Lock()

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

    def _get(
        self,
        engine: wasmtime.Engine,
        wasm: bytes,
        kind: str,
        compile_: Callable[[wasmtime.Engine, bytes], T],
        load: Callable[[wasmtime.Engine, str], T],
    ) -> T:
        key = self.key(wasm, kind)
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
            except (wasmtime.WasmtimeError, OSError):
                compiled = None  # written by another wasmtime or truncated: compile it again
        if compiled is None:
            compiled = compile_(engine, wasm)  # raises WasmtimeError for invalid wasm
            self.compiled += 1
            self._store(path, bytes(compiled.serialize()))
        with self._lock:
            self._memo[memo_key] = (engine, compiled)
            while len(self._memo) > _MEMO_ENTRIES:
                self._memo.popitem(last=False)
        return compiled

    def _store(self, path: Path, data: bytes) -> None:
        # A cache that cannot be written only costs a compile next time; never fail the deploy.
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".partial-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: a concurrent reader sees the old entry or the whole new one
        except OSError:
            pass
