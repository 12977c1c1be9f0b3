"""Turn the host's plain results into the value shapes wasmtime-py lowers for a WIT type.

wasmtime-py 50 picks a variant's case from the Python value's class, and wraps a value in
``Variant(tag, payload)`` only when two cases would share a class ("tagged"). So the same
``result<_, stream-error>`` is ``Variant("ok")`` while ``result<u64, stream-error>`` is a bare int,
and "closed" is ``None``. Host functions here return ``Ok(x)`` / ``Err(x)`` / ``Case(tag, x)``,
dicts for records; ``encoder(type)`` compiles, once per imported function at link time, the
conversion to what that exact type expects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wasmtime.component import (
    ListType,
    OptionType,
    Record,
    RecordType,
    ResultType,
    TupleType,
    ValType,
    Variant,
    VariantType,
)

Encoder = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Ok:
    value: Any = None


@dataclass(frozen=True, slots=True)
class Err:
    value: Any = None


@dataclass(frozen=True, slots=True)
class Case:
    """A variant case by name (e.g. ``Case("closed")``, ``Case("HTTP-request-denied")``)."""

    tag: str
    payload: Any = None


def _same(value: Any) -> Any:
    return value


def _nothing(value: Any) -> None:
    return None


def encoder(ty: ValType | None) -> Encoder:
    if ty is None:
        return _nothing
    if isinstance(ty, ResultType):
        return _result(ty)
    if isinstance(ty, VariantType):
        return _variant(ty)
    if isinstance(ty, OptionType):
        return _option(ty)
    if isinstance(ty, ListType):
        if ty._is_bytes():
            return _bytes
        item = encoder(ty.element)
        return lambda v: [item(x) for x in v]
    if isinstance(ty, TupleType):
        items = [encoder(t) for t in ty.elements]
        return lambda v: tuple(f(x) for f, x in zip(items, v, strict=True))
    if isinstance(ty, RecordType):
        return _record(ty)
    return _same


def _bytes(value: Any) -> bytes:
    # The lowering checks isinstance(bytes): a bytearray or memoryview would pick the wrong case.
    return value if type(value) is bytes else bytes(value)


def _result(ty: ResultType) -> Encoder:
    tagged = ty._tagged()
    ok, err = encoder(ty.ok), encoder(ty.err)

    def encode(value: Any) -> Any:
        if isinstance(value, Ok):
            payload = ok(value.value)
            return Variant("ok", payload) if tagged else payload
        if isinstance(value, Err):
            payload = err(value.value)
            return Variant("err", payload) if tagged else payload
        raise TypeError(f"expected Ok or Err for a result, got {value!r}")

    return encode


def _option(ty: OptionType) -> Encoder:
    inner = encoder(ty.payload)
    if ty._tagged():  # e.g. option<result<T, _>>: some(err) and none would both be None
        return lambda v: Variant("none") if v is None else Variant("some", inner(v))
    return lambda v: None if v is None else inner(v)


def _variant(ty: VariantType) -> Encoder:
    tagged = ty._tagged()
    cases = {name: encoder(t) if t is not None else None for name, t in ty.cases}

    def encode(value: Any) -> Any:
        if not isinstance(value, Case) or value.tag not in cases:
            raise TypeError(f"expected one of {sorted(cases)}, got {value!r}")
        enc = cases[value.tag]
        payload = enc(value.payload) if enc is not None else None
        return Variant(value.tag, payload) if tagged else payload

    return encode


def _record(ty: RecordType) -> Encoder:
    fields = [(name, encoder(t)) for name, t in ty.fields]

    def encode(value: Any) -> Record:
        record = Record()
        for name, enc in fields:
            setattr(record, name, enc(value[name]))
        return record

    return encode
