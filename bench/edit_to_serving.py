"""Edit-to-serving on the local target, for the WAT and C samples: what wasmdev adds to a build.

For each sample, in a temp copy of sample-apps/, this script:
1. measures the baseline: the app's build command run by hand (`sh -c CMD` in its workdir, the
   same environment wasmdev gives it), N times;
2. runs `wasmdev up --headless` as a real subprocess, then N times writes a source change and
   polls the app's URL until a response carries the new content.

It prints median and p90 of edit→serving and of the bare build, their difference (wasmdev's
overhead: noticing the edit, coalescing, starting the build, hashing, compiling and swapping
the module, the first request) and the ratio edit→serving / build. The goal is a median
overhead under 150 ms. Figures, never pass/fail.

    python bench/edit_to_serving.py [--runs N] [--samples hello-wat hello-c]
"""

from __future__ import annotations

import argparse
import os
import queue
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devenv.engine.builder import build_commands, build_env  # noqa: E402
from devenv.manifest import load_app  # noqa: E402

GOAL_OVERHEAD_MS = 150.0


@dataclass(frozen=True)
class Sample:
    name: str  # folder under sample-apps/
    source: str  # the file edited, relative to the app
    path_suffix: str  # appended to the served URL
    edit: Callable[[str, int], tuple[str, str]]  # (text, i) -> (new text, marker to wait for)


def _edit_wat(text: str, i: int) -> tuple[str, str]:
    # The greeting's length is baked into the module (a data segment and its byte count), so
    # the version is swapped for another single character.
    tag = "v" + "0123456789abcdefghijklmnopqrstuvwxyz"[i % 36]
    return re.sub(r"hello-wat v\w!", f"hello-wat {tag}!", text, count=1), f"hello-wat {tag}!"


def _edit_c(text: str, i: int) -> tuple[str, str]:
    marker = f"Hello from C #{i:03d}"
    return re.sub(r'#define GREETING "[^"]*"', f'#define GREETING "{marker}"', text, count=1), marker


SAMPLES = {
    "hello-wat": Sample("hello-wat", "hello.wat", "/bench", _edit_wat),
    "hello-c": Sample("hello-c", "src/main.c", "/bench", _edit_c),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode("utf-8", "replace")
    except OSError:
        return ""


def stats(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]
    return statistics.median(ordered), p90


def bare_build_ms(app_dir: Path, runs: int) -> list[float]:
    """The baseline: the app's own build commands, by hand, as wasmdev would run them."""
    spec = load_app(app_dir / "spin.toml")
    env = build_env()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for component, command in build_commands(spec):
            assert component.build is not None
            subprocess.run(
                command, shell=True, cwd=component.build.workdir, env=env, check=True, capture_output=True
            )
        times.append((time.perf_counter() - start) * 1000)
    return times


class Headless:
    """`wasmdev up --headless` in a subprocess, with its stdout readable line by line."""

    def __init__(self, workspace: Path, cache: Path) -> None:
        env = dict(os.environ, XDG_CACHE_HOME=str(cache), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
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
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def urls(self, apps: list[str], timeout: float = 300.0) -> dict[str, str]:
        found: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        pattern = re.compile(r"\[([\w-]+)\] wasmdev: serving \w+ at (http://\S+)")
        while len(found) < len(apps):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"wasmdev up did not serve {apps} (got {found})")
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if "ERROR" in line:
                print("  " + line)
            if m := pattern.search(line):
                found[m.group(1)] = m.group(2)
        return found

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def edit_to_serving_ms(sample: Sample, app_dir: Path, url: str, runs: int) -> list[float]:
    source = app_dir / sample.source
    times = []
    for i in range(1, runs + 1):
        text, marker = sample.edit(source.read_text(), i)
        start = time.perf_counter()
        source.write_text(text)
        deadline = start + 120
        while marker not in fetch(url):
            if time.perf_counter() > deadline:
                raise SystemExit(f"{sample.name}: {marker!r} never served at {url}")
            time.sleep(0.002)
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(0.3)  # let the loop go idle, as between two saves
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--samples", nargs="+", default=list(SAMPLES), choices=list(SAMPLES))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wasmdev-bench-") as tmp:
        workspace = Path(tmp) / "ws"
        for name in args.samples:
            shutil.copytree(
                REPO / "sample-apps" / name,
                workspace / name,
                ignore=shutil.ignore_patterns("target", ".zig-cache", "*.wasm"),
            )
        print(f"warming up: building {', '.join(args.samples)} once (zig's first build compiles wasi-libc)")
        baseline = {name: bare_build_ms(workspace / name, 1 + args.runs)[1:] for name in args.samples}
        server = Headless(workspace, Path(tmp) / "cache")
        try:
            urls = server.urls(args.samples)
            measured = {
                name: edit_to_serving_ms(
                    SAMPLES[name], workspace / name, urls[name] + SAMPLES[name].path_suffix, args.runs
                )
                for name in args.samples
            }
        finally:
            server.stop()

    print(f"\nedit→serving on the local target, {args.runs} edits per sample (ms)")
    print(
        f"{'sample':<11}{'e2s median':>11}{'e2s p90':>9}{'build median':>14}{'build p90':>11}"
        f"{'overhead':>10}{'ratio':>7}"
    )
    worst = 0.0
    for name in args.samples:
        e2s_med, e2s_p90 = stats(measured[name])
        build_med, build_p90 = stats(baseline[name])
        overhead = e2s_med - build_med
        worst = max(worst, overhead)
        ratio = e2s_med / build_med if build_med > 0 else float("inf")
        print(
            f"{name:<11}{e2s_med:>11.0f}{e2s_p90:>9.0f}{build_med:>14.0f}{build_p90:>11.0f}"
            f"{overhead:>10.0f}{ratio:>6.2f}x"
        )
    verdict = "under" if worst < GOAL_OVERHEAD_MS else "OVER"
    print(f"\nworst median overhead {worst:.0f} ms: {verdict} the {GOAL_OVERHEAD_MS:.0f} ms goal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
