"""Real watchfiles on a temp dir, coalesced: bursts become one batch, outputs never show up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from devenv.engine.watcher import Coalescer, FileBatch, Watcher


async def _next(watcher: Watcher, timeout: float = 10.0) -> FileBatch:
    return await asyncio.wait_for(anext(watcher.batches()), timeout)


async def test_a_burst_of_200_writes_arrives_as_one_batch(tmp_path: Path) -> None:
    watcher = Watcher(tmp_path, quiet_s=0.2, cap_s=5.0)
    await watcher.start()
    try:
        before = time.time()
        for i in range(200):
            (tmp_path / f"f{i:03d}.txt").write_text(f"formatted {i}")
        batch = await _next(watcher)
        assert {p.name for p in batch.paths} == {f"f{i:03d}.txt" for i in range(200)}
        assert before <= batch.first_seen <= batch.last_seen
        # Nothing left over: the burst did not spill into a second batch.
        try:
            extra = await asyncio.wait_for(anext(watcher.batches()), 0.6)
        except TimeoutError:
            extra = None
        assert extra is None
    finally:
        await watcher.close()


async def test_build_outputs_never_reach_the_batches(tmp_path: Path) -> None:
    watcher = Watcher(tmp_path, quiet_s=0.05)
    await watcher.start()
    try:
        (tmp_path / "target").mkdir()
        (tmp_path / "target" / "app.wasm").write_bytes(b"\0asm")
        (tmp_path / ".zig-cache").mkdir()
        (tmp_path / ".zig-cache" / "h").write_text("x")
        (tmp_path / "main.c").write_text("int main(void){return 0;}")
        batch = await _next(watcher)
        assert {p.relative_to(tmp_path).as_posix() for p in batch.paths} == {"main.c"}
    finally:
        await watcher.close()


async def test_coalescer_caps_a_stream_that_never_goes_quiet() -> None:
    coalescer = Coalescer(quiet_s=0.2, cap_s=0.3)
    batches = coalescer.batches()

    async def keep_writing() -> None:
        for i in range(40):
            coalescer.feed([Path(f"/w/{i}")])
            await asyncio.sleep(0.02)

    writer = asyncio.create_task(keep_writing())
    first = await asyncio.wait_for(anext(batches), 5)
    await writer
    # The cap cut the first batch before the writer finished; the rest came after.
    assert 0 < len(first.paths) < 40
    rest = set(first.paths)
    while len(rest) < 40:
        rest |= (await asyncio.wait_for(anext(batches), 5)).paths
    assert rest == {Path(f"/w/{i}") for i in range(40)}


async def test_files_written_into_a_new_folder_at_once_are_reported(tmp_path: Path) -> None:
    # watchfiles reports `copy/` but can miss `copy/spin.toml` written before its watch exists.
    watcher = Watcher(tmp_path, quiet_s=0.1)
    await watcher.start()
    try:
        (tmp_path / "copy" / "src").mkdir(parents=True)
        (tmp_path / "copy" / "spin.toml").write_text("x")
        (tmp_path / "copy" / "src" / "main.c").write_text("x")
        (tmp_path / "copy" / "target").mkdir()
        (tmp_path / "copy" / "target" / "app.wasm").write_text("x")
        wanted = {"copy/spin.toml", "copy/src/main.c"}
        seen: set[str] = set()
        while not wanted <= seen:
            batch = await _next(watcher)
            seen |= {p.relative_to(tmp_path).as_posix() for p in batch.paths}
        assert not any(p.startswith("copy/target/") for p in seen)
    finally:
        await watcher.close()
