"""The fake `spin` on PATH, and small Spin apps on disk whose components are real component
binaries (from WAT) exporting the wasi:http handler a test asks for."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from types import MappingProxyType

import pytest
import wasmtime

from devenv.manifest import load_app
from devenv.model import BuiltApp

FAKE_SPIN_DIR = Path(__file__).resolve().parent

P2 = "wasi:http/incoming-handler@0.2.0"
P3_RC = "wasi:http/handler@0.3.0-rc-2026-03-15"
P3 = "wasi:http/handler@0.3.0"


def http_component(export: str, marker: str = "") -> bytes:
    """A component exporting ``export``; ``marker`` (a custom section) makes builds differ."""
    text = f'(component (component $c) (instance $i (instantiate $c)) (export "{export}" (instance $i)))'
    data = bytes(wasmtime.wat2wasm(text))
    if marker:
        name = b"wasmdev-build"
        payload = bytes([len(name)]) + name + marker.encode()
        data += b"\x00" + bytes([len(payload)]) + payload  # a custom section (id 0)
    return data


def write_spin_app(root: Path, export: str, *, marker: str = "v1", name: str = "hello") -> BuiltApp:
    root.mkdir(parents=True, exist_ok=True)
    (root / "spin.toml").write_text(
        "spin_manifest_version = 2\n\n[application]\n"
        f'name = "{name}"\n\n[[trigger.http]]\nroute = "/..."\ncomponent = "{name}"\n\n'
        f'[[trigger.http]]\nroute = "/api/exact"\ncomponent = "api"\n\n'
        f'[component.{name}]\nsource = "app.wasm"\n\n[component.api]\nsource = "api.wasm"\n'
    )
    (root / "app.wasm").write_bytes(http_component(export, marker))
    (root / "api.wasm").write_bytes(http_component(P2, marker))
    return built_app(root)


def built_app(root: Path) -> BuiltApp:
    spec = load_app(root / "spin.toml")
    h = hashlib.sha256()
    for path in sorted(root.glob("*")):
        if path.is_file():
            h.update(path.read_bytes())
    return BuiltApp(
        spec=spec,
        digest="sha256:" + h.hexdigest(),
        wasm=MappingProxyType({c.id: c.source for c in spec.components.values()}),
        built_at=time.time(),
    )


def wasm_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@pytest.fixture
def fake_spin_on_path(monkeypatch: pytest.MonkeyPatch) -> str:
    """PATH with the fake `spin` first; returns the PATH string."""
    path = f"{FAKE_SPIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"
    monkeypatch.setenv("PATH", path)
    monkeypatch.delenv("FAKE_SPIN_VERSION", raising=False)
    monkeypatch.delenv("FAKE_SPIN_STARTUP_S", raising=False)
    return path
