"""Spin's runtime configuration file (``spin up --runtime-config-file``), the parts the local
target uses: where key-value stores and SQLite databases other than ``default`` live.

    [key_value_store.cache]
    type = "spin"            # Spin's SQLite-backed store
    path = "data/cache.db"   # relative to this file's folder, as Spin resolves it

    [sqlite_database.reports]
    type = "spin"
    path = "data/reports.db"

    [[variables_provider]]   # before the environment, as Spin orders them
    type = "static"
    values = { api_host = "staging.example.com" }

A store or database without ``path`` is in memory, as in Spin. Variable providers: ``static`` and
``env`` (a ``prefix`` other than SPIN_VARIABLE, an optional ``dotenv_path``); Vault and Azure Key
Vault are refused naming the table and the fix. Other backends (redis, azure,
libsql, ...) are refused here, naming the table and the fix, rather than at the first request.
Tables this module does not read (``[variable_provider]``, ``[llm_compute]``, ...) are left alone:
Spin's file may carry them for other targets.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from devenv.errors import ManifestError

KV_TYPES = ("spin",)
SQLITE_TYPES = ("spin",)


@dataclass(frozen=True)
class StoreConfig:
    """One ``[key_value_store.NAME]`` or ``[sqlite_database.NAME]``: a SQLite file, or None for an
    in-memory one."""

    label: str
    path: Path | None


@dataclass(frozen=True)
class VariableProvider:
    """One ``[[variables_provider]]``: ``static`` values, or the environment under ``prefix``
    (``PREFIX_NAME``) with an optional dotenv file."""

    kind: str  # "static" | "env"
    values: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    prefix: str = "SPIN_VARIABLE"
    dotenv_path: Path | None = None


@dataclass(frozen=True)
class RuntimeConfig:
    path: Path | None = None  # the file it was read from
    key_value_stores: MappingProxyType[str, StoreConfig] = field(default_factory=lambda: MappingProxyType({}))
    sqlite_databases: MappingProxyType[str, StoreConfig] = field(default_factory=lambda: MappingProxyType({}))
    variable_providers: tuple[VariableProvider, ...] = ()


def load_runtime_config(path: Path) -> RuntimeConfig:
    """Read ``path``; raise ``ManifestError`` naming the file, the table and the fix."""
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as err:
        raise ManifestError.at(
            path,
            "",
            f"cannot read the runtime config file: {err.strerror or err}",
            "check --runtime-config-file",
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ManifestError.at(path, "", f"not valid TOML: {err}", "fix the TOML syntax") from None
    base = path.resolve().parent
    kv = _stores(path, base, doc, "key_value_store", KV_TYPES)
    sql = _stores(path, base, doc, "sqlite_database", SQLITE_TYPES)
    return RuntimeConfig(
        path=path,
        key_value_stores=MappingProxyType(kv),
        sqlite_databases=MappingProxyType(sql),
        variable_providers=_variable_providers(path, base, doc),
    )


def _variable_providers(path: Path, base: Path, doc: dict[str, Any]) -> tuple[VariableProvider, ...]:
    key = "variables_provider" if "variables_provider" in doc else "config_provider"
    entries = doc.get(key, [])
    if not isinstance(entries, list):
        raise ManifestError.at(path, key, "must be an array of tables", f"write [[{key}]] tables")
    providers: list[VariableProvider] = []
    for index, entry in enumerate(entries):
        where = f"{key}[{index}]"
        if not isinstance(entry, dict):
            raise ManifestError.at(path, where, "must be a table", f'write [[{key}]] with type = "static"')
        kind = entry.get("type")
        if kind == "static":
            values = entry.get("values", {})
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                raise ManifestError.at(
                    path, f"{where}.values", "must be a table of strings", 'write values = { name = "value" }'
                )
            providers.append(VariableProvider("static", values=MappingProxyType(dict(values))))
        elif kind == "env":
            dotenv = entry.get("dotenv_path")
            providers.append(
                VariableProvider(
                    "env",
                    prefix=str(entry.get("prefix", "SPIN_VARIABLE")),
                    dotenv_path=None if dotenv is None else base / str(dotenv),
                )
            )
        else:
            raise ManifestError.at(
                path,
                where,
                f"variables provider type {kind!r} is not supported by the local target (supported: 'static', 'env')",
                "for local runs give the values with a static provider or SPIN_VARIABLE_* in the environment; "
                "run the app on the cluster target for Vault or Azure Key Vault",
            )
    return tuple(providers)


def _stores(
    path: Path, base: Path, doc: dict[str, Any], table: str, types: tuple[str, ...]
) -> dict[str, StoreConfig]:
    section = doc.get(table, {})
    if not isinstance(section, dict):
        raise ManifestError.at(path, table, "must be a table of named stores", f"write [{table}.NAME] tables")
    stores: dict[str, StoreConfig] = {}
    for label, spec in section.items():
        key = f"{table}.{label}"
        if not isinstance(spec, dict):
            raise ManifestError.at(path, key, "must be a table", f'write [{key}] with type = "spin"')
        kind = spec.get("type")
        if kind not in types:
            raise ManifestError.at(
                path,
                key,
                f"type {kind!r} is not supported by the local target (supported: "
                + ", ".join(repr(t) for t in types)
                + ")",
                'use type = "spin" with a path for local runs, or run the app on the cluster target',
            )
        raw = spec.get("path")
        if raw is not None and not isinstance(raw, str):
            raise ManifestError.at(path, f"{key}.path", "must be a string", 'write path = "data/store.db"')
        stores[label] = StoreConfig(label, None if raw is None else base / Path(raw).expanduser())
    return stores


def workspace_runtime_config(setting: Path | None, root: Path) -> RuntimeConfig | None:
    """The runtime config a workspace's local target uses: ``[local] runtime_config`` (or
    ``--runtime-config-file``), relative to the workspace root; None when not set."""
    if setting is None:
        return None
    return load_runtime_config(setting if setting.is_absolute() else root / setting)
