"""Errors a user can act on: what failed, where, and the fix.

Every expected failure in wasmdev is raised as a ``WasmdevError`` (or a subclass). The CLI prints
``str(err)`` without a traceback; the engine stores it on the app it belongs to so other apps keep
running. Anything else is a bug, shown with a traceback only under ``--debug``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class WasmdevError(Exception):
    what: str
    where: str = ""
    fix: str = ""

    def __post_init__(self) -> None:
        Exception.__init__(self, self.what)

    def __str__(self) -> str:
        parts = [f"{self.where}: {self.what}" if self.where else self.what]
        if self.fix:
            parts.append(f"  fix: {self.fix}")
        return "\n".join(parts)


@dataclass
class ManifestError(WasmdevError):
    """A spin.toml or wasmdev.toml that cannot be read as Spin (or wasmdev) reads it."""

    path: Path | None = None
    key: str = ""

    @classmethod
    def at(cls, path: Path | str, key: str, what: str, fix: str = "") -> ManifestError:
        where = f"{path}" + (f" [{key}]" if key else "")
        return cls(what=what, where=where, fix=fix, path=Path(path), key=key)


class BuildError(WasmdevError):
    """A build command failed; the previous build keeps serving."""


class DeployError(WasmdevError):
    """A target refused or failed a deploy; the previous version keeps serving."""


class TargetUnavailable(WasmdevError):
    """A target cannot be prepared here (no Docker, no k3d, no cluster)."""
