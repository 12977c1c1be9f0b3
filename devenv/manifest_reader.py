"""Typed access to a parsed TOML document whose every error names the file and the key path.

Shared by the spin.toml reader (both manifest versions) and the wasmdev.toml reader, so that all
of them word their errors the same way: what was found, what was expected, and the fix.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Collection, Iterable
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, NoReturn

from devenv.errors import ManifestError

# tomllib ends each message with "(at line L, column C)" or "(at end of document)".
_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|(end of document))\)")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_type(value: object) -> str:
    """The TOML name of a value's type, for "expected X, found Y" messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return "a date-time"
    return type(value).__name__


def describe(value: object) -> str:
    """The type and a short rendering of the value, e.g. `an integer (5)`."""
    if isinstance(value, dict | list):
        return toml_type(value)
    shown = repr(value) if not isinstance(value, bool) else str(value).lower()
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{toml_type(value)} ({shown})"


def key_join(prefix: str, key: str) -> str:
    """Append a key to a dotted key path, quoting it as TOML would when it is not a bare key."""
    part = key if _BARE_KEY.match(key) else '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{prefix}.{part}" if prefix else part


def closest(word: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


class TomlReader:
    """Reads values out of one TOML file; every problem raises a ManifestError for that file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        """Parse the file; a missing file, bad encoding or TOML syntax error is a ManifestError."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self.fail("", "file not found", f"check the path, or create {self.path.name}")
        except IsADirectoryError:
            self.fail("", "is a directory, not a TOML file", f"point at the {self.path.name} file inside it")
        except OSError as exc:
            self.fail("", f"cannot read the file: {exc.strerror or exc}", "check the file's permissions")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            self.fail("", f"not valid UTF-8 (line {line})", "save the file as UTF-8")
        # Errors are raised outside the `except` blocks so the parser's exception is not chained.
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
        except RecursionError:
            message = "the document nests too deeply"
        found = _TOML_POSITION.search(message)
        if found is None:
            where = "an unknown position"
        elif found.group(3):
            where = "the end of the file"
        else:
            where = f"line {found.group(1)}, column {found.group(2)}"
        reason = _TOML_POSITION.sub("", message).strip()
        self.fail(
            "",
            f"TOML parse error at {where}: {reason}",
            f"fix the TOML syntax at {where} (see https://toml.io for the format)",
        )

    # -- errors ----------------------------------------------------------------------------

    def fail(self, key: str, what: str, fix: str = "") -> NoReturn:
        raise ManifestError.at(self.path, key, what, fix)

    def expected(self, key: str, expected: str, value: object, fix: str = "") -> NoReturn:
        self.fail(key, f"expected {expected}, found {describe(value)}", fix or f"set `{key}` to {expected}")

    # -- shapes ----------------------------------------------------------------------------

    def check_keys(
        self,
        table: dict[str, Any],
        key: str,
        allowed: Collection[str],
        required: Collection[str] = (),
    ) -> None:
        """Reject keys outside ``allowed`` (suggesting the closest) and report missing ones."""
        for name in table:
            if name not in allowed:
                near = closest(name, allowed)
                expected = ", ".join(f"`{a}`" for a in allowed)
                self.fail(
                    key_join(key, name),
                    f"unknown field `{name}`, expected one of {expected}",
                    f"did you mean `{near}`? rename it" if near else f"remove `{name}` or fix its spelling",
                )
        for name in required:
            if name not in table:
                where = f"`[{key}]`" if key else "the top level"
                self.fail(key, f"missing field `{name}`", f"add `{name} = ...` to {where}")

    def table(self, value: object, key: str, fix: str = "") -> dict[str, Any]:
        if not isinstance(value, dict):
            self.expected(key, "a table", value, fix)
        return value

    def string(self, value: object, key: str, fix: str = "") -> str:
        if not isinstance(value, str):
            self.expected(key, "a string", value, fix)
        return value

    def boolean(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            self.expected(key, "true or false", value)
        return value

    def string_list(self, value: object, key: str) -> list[str]:
        if not isinstance(value, list):
            self.expected(key, "an array of strings", value)
        for index, item in enumerate(value):
            self.string(item, f"{key}[{index}]")
        return value

    def string_map(self, value: object, key: str) -> dict[str, str]:
        table = self.table(value, key)
        for name, item in table.items():
            self.string(item, key_join(key, name))
        return table
