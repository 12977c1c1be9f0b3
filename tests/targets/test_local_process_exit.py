"""A serving process whose connection closes before it has exited: the server loop (which serves
every in-process request) is not held while it finishes exiting; the exit is reported, with its
real status, once the process is reaped."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from devenv.targets.local import serving_process
from devenv.targets.local.messages import ProcessOptions
from devenv.targets.local.serving_process import ServingProcess
from tests.targets.local_helpers import wait_until


async def test_an_exit_is_reported_once_reaped_without_holding_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A "python" that closes its end of the control channel, then exits only when told to
    # (the test creates a file): its exit is not visible yet when wasmdev sees the channel close.
    go = tmp_path / "go"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/bash\neval "exec $3>&-"\nuntil [ -e {go} ]; do sleep 0.01; done\nexit 7\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(serving_process.sys, "executable", str(fake))
    monkeypatch.setattr(serving_process, "EXIT_GRACE_S", 120.0, raising=False)  # exits on its own
    lost: list[str] = []
    options = ProcessOptions(
        cache_dir=str(tmp_path / "cache"), config_key="k", host="127.0.0.1", threads=1, timeout_s=5.0,
        memory_bytes=1 << 24, index=-1,
    )
    process = ServingProcess(0, tmp_path, options, lambda items: None, lambda p, reason: lost.append(reason))
    await process.connect()
    try:
        await wait_until(lambda: not process.alive, timeout=30)  # connection_lost ran, and returned
        assert lost == []  # not reported while the process is still there
        assert process.proc.returncode is None
        go.touch()
        await wait_until(lambda: bool(lost), timeout=30)
        assert lost == ["exit status 7"]
        assert process.closed.done()
    finally:
        go.touch()
        process.kill()
