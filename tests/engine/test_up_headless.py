"""`wasmdev up --headless` as a real subprocess on a copy of sample-apps/hello-wat: request it,
edit the WAT, see the new response; the printed lines tell the story; Ctrl-C ends it cleanly."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.child_output import wasmdev_up
from tests.conftest import SAMPLE_APPS
from tests.engine.session import WAIT_S

HELLO_WAT = SAMPLE_APPS / "hello-wat"


def _get_until(url: str, text: str) -> str:
    deadline = time.monotonic() + WAIT_S
    body = ""
    while time.monotonic() < deadline:
        try:
            body = httpx.get(url, timeout=5).text
        except httpx.TransportError:
            body = ""
        if text in body:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{url} never served {text!r}; last body {body!r}")


@pytest.mark.skipif(
    not (HELLO_WAT / "spin.toml").is_file(), reason="sample-apps/hello-wat is not in this tree"
)
def test_up_headless_serves_rebuilds_on_edit_and_stops_cleanly(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    shutil.copytree(HELLO_WAT, workspace / "hello-wat", ignore=shutil.ignore_patterns("*.wasm"))
    wat = workspace / "hello-wat" / "hello.wat"
    assert "hello-wat v1!" in wat.read_text()
    with wasmdev_up(workspace, tmp_path / "cache") as lines:
        lines.expect(r"\[hello-wat/hello\] build: \$ python build\.py")
        url = lines.expect(r"\[hello-wat\] wasmdev: serving \w+ at (http://127\.0\.0\.1:\d+/\S+)").group(1)
        assert "Hello from hello-wat v1!" in _get_until(url + "/x", "v1")
        lines.expect(r"request: GET /hello/x 200 ")
        httpx.get(url + "/trap", timeout=5)  # a failed request says why, on its one line
        lines.expect(r"\[hello-wat/hello\] request ERROR: GET /hello/trap 500 .*trap")
        wat.write_text(wat.read_text().replace("hello-wat v1!", "hello-wat v2!"))
        lines.expect(r"wasmdev: serving \w+ at .* \(edit→serving \d+ ms\)")
        assert "Hello from hello-wat v2!" in _get_until(url + "/x", "v2")

        wat.write_text("(module (func (unknown)))")  # a broken edit: reported, v2 keeps serving
        lines.expect(r"\[hello-wat\] wasmdev ERROR: build failed: .*python build\.py")
        assert "hello-wat v2!" in httpx.get(url + "/x", timeout=5).text
