"""Write a parsed TOML document back out as TOML.

The image carries a rewritten ``spin.toml``; Python's ``tomllib`` only reads, and no TOML writer is
a dependency, so this module emits the subset of TOML that ``tomllib`` produces: tables, arrays of
tables, strings, integers, floats, booleans, dates/times and arrays. Output is deterministic (keys
in the order of the mapping given, which the caller keeps stable) so the same manifest always
yields the same bytes and therefore the same layer digest.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def dumps_toml(document: Mapping[str, Any]) -> str:
    """Serialize ``document`` (as ``tomllib.loads`` returns it) to TOML text."""
    lines: list[str] = []
    _emit_table(document, (), lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(value: str) -> str:
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_array_of_tables(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and len(value) > 0
        and all(_is_table(v) for v in value)
    )


def _value(value: Any) -> str:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _emit_table(table: Mapping[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
    # Plain key/value pairs must precede sub-table headers, or they would land in the sub-table.
    for key, value in table.items():
        if not _is_table(value) and not _is_array_of_tables(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        sub = (*path, key)
        header = ".".join(_key(k) for k in sub)
        if _is_table(value):
            # A table holding only sub-tables needs no header of its own (TOML creates it implicitly).
            if any(not _is_table(v) and not _is_array_of_tables(v) for v in value.values()) or not value:
                lines.append("")
                lines.append(f"[{header}]")
            _emit_table(value, sub, lines)
        elif _is_array_of_tables(value):
            for element in value:
                lines.append("")
                lines.append(f"[[{header}]]")
                _emit_table(element, sub, lines)
