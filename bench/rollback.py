"""Rollback against a save, on the local target: how long until a kept build serves again,
compared with how long an edit takes to serve (the baseline, measured in the same run).

In a temp copy of sample-apps/hello-wat, the script runs `wasmdev up --headless` as a real
subprocess, then N times: edits hello.wat and polls /hello/ until the new greeting is served
(edit→serving), then sends a rollback through the session's control endpoint (what `wasmdev
rollback` sends, minus the CLI's interpreter start) and polls until the previous greeting is
served (rollback→serving). It prints median and p90 of both and their ratio, and the wall time of
one `wasmdev rollback` command including the interpreter's start. Figures, never pass/fail.

    python bench/rollback.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devenv.control.client import send  # noqa: E402
from devenv.control.messages import HistoryQuery, RollbackCommand  # noqa: E402
from devenv.engine.history import state_dir  # noqa: E402

POLL_S = 0.005
SAMPLE = REPO / "sample-apps" / "hello-wat"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


def wait_for(url: str, text: str, timeout: float = 120.0) -> float:
    """Seconds until ``url`` serves ``text``."""
    started = time.perf_counter()
    while text not in fetch(url):
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"{url} never served {text!r}")
        time.sleep(POLL_S)
    return time.perf_counter() - started


def stats(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[max(0, int(round(0.9 * len(ordered))) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasmdev-bench-") as tmp:
        workspace = Path(tmp) / "ws"
        shutil.copytree(SAMPLE, workspace / "hello-wat", ignore=shutil.ignore_patterns("*.wasm"))
        wat = workspace / "hello-wat" / "hello.wat"
        env = dict(os.environ, XDG_CACHE_HOME=str(Path(tmp) / "cache"), PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devenv",
                "up",
                "--headless",
                "-C",
                str(workspace),
                "--port",
                str(free_port()),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=REPO,
            # Stopped with SIGINT, as Ctrl-C would: not ignored even when this bench was started
            # in the background by a non-interactive shell (which ignores SIGINT for its children).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            assert proc.stdout is not None
            url = ""
            for line in proc.stdout:
                if m := re.search(r"\[hello-wat\] wasmdev: serving \w+ at (http://\S+)", line):
                    url = m.group(1) + "/"
                    break
            if not url:
                raise SystemExit("wasmdev up never served hello-wat")
            # Keep reading: a full pipe would block the session's printer, and with it the engine.
            session_log: list[str] = []
            threading.Thread(target=lambda: session_log.extend(proc.stdout or ()), daemon=True).start()
            text = wat.read_text()
            assert "hello-wat v1!" in text
            wait_for(url, "hello-wat v1!")
            edits: list[float] = []
            rollbacks: list[float] = []
            previous = "v1"
            for i in range(args.runs):
                tag = "v" + "23456789abcdefghijklmnopqrstuvwxyz"[i % 34]
                started = time.perf_counter()
                wat.write_text(text.replace("hello-wat v1!", f"hello-wat {tag}!"))
                wait_for(url, f"hello-wat {tag}!")
                edits.append(time.perf_counter() - started)
                started = time.perf_counter()
                reply = send(workspace, state_dir(workspace), RollbackCommand(app="hello-wat"))
                if reply.error:
                    history = send(workspace, state_dir(workspace), HistoryQuery(app="hello-wat"))
                    tail = "".join(session_log[-40:])
                    raise SystemExit(f"run {i}: {reply.error}\n" + "\n".join(history.lines) + "\n" + tail)
                wait_for(url, f"hello-wat {previous}!")
                rollbacks.append(time.perf_counter() - started)
                previous = tag
            started = time.perf_counter()
            cli = subprocess.run(
                [sys.executable, "-m", "devenv", "rollback", "hello-wat", "-C", str(workspace)],
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            cli_s = time.perf_counter() - started
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    e50, e90 = stats([x * 1000 for x in edits])
    r50, r90 = stats([x * 1000 for x in rollbacks])
    print(f"hello-wat, {args.runs} runs on the local target")
    print(f"  edit→serving (baseline)  median {e50:7.1f} ms   p90 {e90:7.1f} ms")
    print(f"  rollback→serving         median {r50:7.1f} ms   p90 {r90:7.1f} ms")
    print(f"  ratio rollback / edit    {r50 / e50:.2f} (median)")
    print(
        f"  `wasmdev rollback` CLI wall time, interpreter start included: {cli_s * 1000:.0f} ms (exit {cli.returncode})"
    )


if __name__ == "__main__":
    main()
