"""Key-value: ``fermyon:spin/key-value@2.0.0`` and ``wasi:keyvalue`` store/atomics/batch at
``0.2.0-draft2`` (the draft Spin 3 ships), over the component's granted stores.

Opening a label the component is not granted returns ``access-denied``, as Spin does (Spin checks
the grant before it looks the store up); every granted label exists, because the deploy refused
labels with no store behind them. Values are bytes, stored and returned byte-exact. A storage
failure is ``other(message)``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from wasmtime.component import ResourceAny

from devenv.targets.local.spin.state import KvStore
from devenv.targets.local.spin.variables import spin_of
from devenv.targets.local.wasi.codec import Case, Err, Ok
from devenv.targets.local.wasi.host import HostContext, Kind, Resource
from devenv.targets.local.wasi.registry import Interface

SPIN_KV = "fermyon:spin/key-value@2.0.0"
WASI_KV_VERSION = "0.2.0-draft2"


class SpinStore(Resource):
    KIND = Kind.SPIN_KV_STORE

    def __init__(self, store: KvStore) -> None:
        self.store = store


class Bucket(Resource):
    KIND = Kind.WASI_KV_BUCKET

    def __init__(self, store: KvStore) -> None:
        self.store = store


class Cas(Resource):
    KIND = Kind.WASI_KV_CAS

    def __init__(self, store: KvStore, key: str, seen: bytes | None) -> None:
        self.store = store
        self.key = key
        self.seen = seen


def _granted(ctx: HostContext, label: str) -> KvStore | None:
    store = spin_of(ctx).key_value_stores.get(label)
    if store is None:
        ctx.note(
            f"key-value store `{label}` opened but not granted (access-denied): add it to "
            f"key_value_stores in [component.{ctx.config.component_id}] in spin.toml"
        )
    return store


def _guard(ctx: HostContext, label: str, op: Any) -> Any:
    """Run a storage operation; a SQLite failure is the interface's ``other`` error."""
    try:
        return Ok(op())
    except (sqlite3.Error, OSError) as err:
        ctx.note(f"key-value store `{label}` failed: {err}")
        return Err(Case("other", f"{type(err).__name__}: {err}"))


class _StoreOps:
    """open, get, set, delete, exists over one granted store: Spin's ``store`` and
    wasi:keyvalue's ``bucket`` are the same operations behind different resource types."""

    def __init__(self, resource: type[SpinStore] | type[Bucket]) -> None:
        self.resource = resource

    def open(self, ctx: HostContext, label: str) -> Any:
        store = _granted(ctx, label)
        if store is None:
            return Err(Case("access-denied"))
        return Ok(ctx.own(self.resource(store)))

    def held(self, ctx: HostContext, handle: ResourceAny) -> KvStore:
        return ctx.borrow(handle, self.resource).store

    def get(self, ctx: HostContext, handle: ResourceAny, key: str) -> Any:
        store = self.held(ctx, handle)
        return _guard(ctx, store.label, lambda: store.get(key))

    def set(self, ctx: HostContext, handle: ResourceAny, key: str, value: bytes) -> Any:
        store = self.held(ctx, handle)
        return _guard(ctx, store.label, lambda: store.set(key, bytes(value)))

    def delete(self, ctx: HostContext, handle: ResourceAny, key: str) -> Any:
        store = self.held(ctx, handle)
        return _guard(ctx, store.label, lambda: store.delete(key))

    def exists(self, ctx: HostContext, handle: ResourceAny, key: str) -> Any:
        store = self.held(ctx, handle)
        return _guard(ctx, store.label, lambda: store.exists(key))


_SPIN_STORE = _StoreOps(SpinStore)  # fermyon:spin/key-value@2.0.0
_BUCKET = _StoreOps(Bucket)  # wasi:keyvalue@0.2.0-draft2


def _kv_keys(ctx: HostContext, self: ResourceAny) -> Any:
    store = _SPIN_STORE.held(ctx, self)
    return _guard(ctx, store.label, store.keys)


def _bucket_list_keys(ctx: HostContext, self: ResourceAny, cursor: str | None) -> Any:
    # Spin returns every key in one response, with no cursor to continue from.
    store = _BUCKET.held(ctx, self)
    return _guard(ctx, store.label, lambda: {"keys": store.keys(), "cursor": None})


def _increment(ctx: HostContext, bucket: ResourceAny, key: str, delta: int) -> Any:
    store = _BUCKET.held(ctx, bucket)
    return _guard(ctx, store.label, lambda: store.increment(key, delta))


def _cas_new(ctx: HostContext, bucket: ResourceAny, key: str) -> Any:
    store = _BUCKET.held(ctx, bucket)
    seen = _guard(ctx, store.label, lambda: store.get(key))
    if isinstance(seen, Err):
        return seen
    return Ok(ctx.own(Cas(store, key, seen.value)))


def _cas_current(ctx: HostContext, self: ResourceAny) -> Any:
    return Ok(ctx.borrow(self, Cas).seen)


def _swap(ctx: HostContext, cas: ResourceAny, value: bytes) -> Any:
    entry = ctx.take(cas, Cas)
    done = _guard(ctx, entry.store.label, lambda: entry.store.swap_if(entry.key, entry.seen, bytes(value)))
    if isinstance(done, Err):
        return Err(Case("store-error", done.value))
    if not done.value:
        return Err(Case("cas-failed", ctx.own(entry)))
    return Ok()


def _get_many(ctx: HostContext, bucket: ResourceAny, keys: list[str]) -> Any:
    store = _BUCKET.held(ctx, bucket)
    return _guard(ctx, store.label, lambda: [(k, store.get(k)) for k in keys])


def _set_many(ctx: HostContext, bucket: ResourceAny, pairs: list[tuple[str, bytes]]) -> Any:
    store = _BUCKET.held(ctx, bucket)

    def run() -> None:
        for key, value in pairs:
            store.set(key, bytes(value))

    return _guard(ctx, store.label, run)


def _delete_many(ctx: HostContext, bucket: ResourceAny, keys: list[str]) -> Any:
    store = _BUCKET.held(ctx, bucket)

    def run() -> None:
        for key in keys:
            store.delete(key)

    return _guard(ctx, store.label, run)


INTERFACES = [
    Interface(
        SPIN_KV,
        resources={"store": Kind.SPIN_KV_STORE},
        functions={
            "[static]store.open": _SPIN_STORE.open,
            "[method]store.get": _SPIN_STORE.get,
            "[method]store.set": _SPIN_STORE.set,
            "[method]store.delete": _SPIN_STORE.delete,
            "[method]store.exists": _SPIN_STORE.exists,
            "[method]store.get-keys": _kv_keys,
        },
    ),
    Interface(
        f"wasi:keyvalue/store@{WASI_KV_VERSION}",
        resources={"bucket": Kind.WASI_KV_BUCKET},
        functions={
            "open": _BUCKET.open,
            "[method]bucket.get": _BUCKET.get,
            "[method]bucket.set": _BUCKET.set,
            "[method]bucket.delete": _BUCKET.delete,
            "[method]bucket.exists": _BUCKET.exists,
            "[method]bucket.list-keys": _bucket_list_keys,
        },
    ),
    Interface(
        f"wasi:keyvalue/atomics@{WASI_KV_VERSION}",
        resources={"cas": Kind.WASI_KV_CAS},
        functions={
            "increment": _increment,
            "[static]cas.new": _cas_new,
            "[method]cas.current": _cas_current,
            "swap": _swap,
        },
    ),
    Interface(
        f"wasi:keyvalue/batch@{WASI_KV_VERSION}",
        functions={"get-many": _get_many, "set-many": _set_many, "delete-many": _delete_many},
    ),
]
