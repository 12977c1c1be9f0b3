"""The intermediate manifest form (from either version) → AppSpec: component sources, files,
outbound hosts, build specs and HTTP triggers, with Spin's value rules and keyed errors.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

from devenv.manifest_reader import TomlReader
from devenv.manifest_rules import convert_allowed_http_hosts, outbound_hosts_problem
from devenv.manifest_v2 import (
    TRIGGER_COMMON_KEYS,
    RawComponent,
    RawManifest,
    RawTrigger,
    check_variable_names,
)
from devenv.model import AppSpec, BuildSpec, ComponentSpec, Executor, FileMount, HttpTrigger, Route

COMPONENT_KEYS = (
    "source",
    "description",
    "variables",
    "environment",
    "files",
    "exclude_files",
    "allowed_http_hosts",
    "allowed_outbound_hosts",
    "key_value_stores",
    "sqlite_databases",
    "ai_models",
    "targets",
    "build",
    "tool",
    "dependencies_inherit_configuration",
    "dependencies",
    "profile",
)
_BUILD_KEYS = ("command", "workdir", "watch")
_HTTP_TRIGGER_KEYS = (*TRIGGER_COMMON_KEYS, "route", "executor", "static_response")
_WAGI_DEFAULTS = HttpTrigger(route=Route("/"), component="", executor=Executor.WAGI)

# ---------------------------------------------------------------------------------------------
# From the intermediate form to the model
# ---------------------------------------------------------------------------------------------


def build_app(r: TomlReader, raw: RawManifest) -> AppSpec:
    defaults = {name: spec["default"] for name, spec in raw.variables.items() if "default" in spec}
    warnings: list[str] = []
    components = {
        cid: _build_component(r, rc, defaults, raw.version == 1, warnings)
        for cid, rc in raw.components.items()
    }
    http_triggers: list[HttpTrigger] = []
    other: list[str] = []
    for trigger in raw.triggers:
        if trigger.type == "http":
            built = _build_http_trigger(r, trigger, warnings)
            if built is not None:
                http_triggers.append(built)
        elif trigger.type not in other:
            other.append(trigger.type)
    for trigger_type in raw.trigger_settings:
        if (
            trigger_type != "http"
            and trigger_type not in other
            and not any(t.type == trigger_type for t in raw.triggers)
        ):
            other.append(trigger_type)
    http_settings = raw.trigger_settings.get("http", {})
    base = r.string(http_settings.get("base", "/"), raw.http_base_key)
    return AppSpec(
        name=raw.name,
        manifest_path=r.path,
        version=raw.app_version,
        description=raw.description,
        components=MappingProxyType(components),
        http_triggers=tuple(http_triggers),
        other_triggers=tuple(other),
        http_base=base or "/",
        variables=MappingProxyType({k: MappingProxyType(v) for k, v in raw.variables.items()}),
        manifest_version=raw.version,
        warnings=tuple(warnings),
    )


def _build_component(
    r: TomlReader, rc: RawComponent, defaults: dict[str, str], legacy: bool, warnings: list[str]
) -> ComponentSpec:
    t, key = rc.table, rc.key
    root = r.path.parent
    r.check_keys(t, key, COMPONENT_KEYS, required=("source",))
    source, url, digest = _read_source(r, t["source"], f"{key}.source")
    variables = r.string_map(t.get("variables", {}), f"{key}.variables")
    check_variable_names(r, variables, f"{key}.variables")
    grants = {
        list_key: tuple(r.string_list(t.get(list_key, []), f"{key}.{list_key}"))
        for list_key in ("key_value_stores", "sqlite_databases", "ai_models")
    }
    for table_key in ("tool", "dependencies", "profile"):
        r.table(t.get(table_key, {}), f"{key}.{table_key}")
    if "dependencies_inherit_configuration" in t:
        r.boolean(t["dependencies_inherit_configuration"], f"{key}.dependencies_inherit_configuration")
    return ComponentSpec(
        id=rc.id,
        source=(root / source) if source is not None else None,
        source_url=url,
        source_digest=digest,
        description=r.string(t.get("description", ""), f"{key}.description"),
        files=_read_files(r, t.get("files", []), f"{key}.files"),
        exclude_files=tuple(r.string_list(t.get("exclude_files", []), f"{key}.exclude_files")),
        environment=MappingProxyType(dict(r.string_map(t.get("environment", {}), f"{key}.environment"))),
        allowed_outbound_hosts=_read_outbound_hosts(r, t, key, defaults, legacy, warnings),
        build=_read_build(r, t["build"], f"{key}.build") if "build" in t else None,
        variables=MappingProxyType(dict(variables)),
        key_value_stores=grants["key_value_stores"],
        sqlite_databases=grants["sqlite_databases"],
    )


def _read_source(r: TomlReader, value: object, key: str) -> tuple[str | None, str | None, str | None]:
    """(path, url, digest): a path string, `{ url, digest }`, or a registry package."""
    fix = 'use a path (`source = "target/app.wasm"`) or `{ url = "https://...", digest = "sha256:..." }`'
    if isinstance(value, str):
        if not value:
            r.fail(key, "the component source path is empty", fix)
        return value, None, None
    table = r.table(value, key, fix)
    if "url" in table or "digest" in table:
        r.check_keys(table, key, ("url", "digest"), required=("url", "digest"))
        url = r.string(table["url"], f"{key}.url")
        digest = r.string(table["digest"], f"{key}.digest")
        if not digest.startswith("sha256:"):
            r.fail(
                f"{key}.digest",
                f"invalid `digest` \"{digest}\"; must start with 'sha256:'",
                "write the digest as `sha256:<64 hex digits>` (e.g. from `sha256sum`)",
            )
        return None, url, digest
    if "package" in table or "version" in table:
        r.check_keys(table, key, ("registry", "package", "version"), required=("package", "version"))
        for part in table:
            r.string(table[part], f"{key}.{part}")
        registry = f"{table['registry']}/" if "registry" in table else ""
        return None, f"registry:{registry}{table['package']}@{table['version']}", None
    r.fail(
        key,
        "expected a path, `{ url, digest }` or `{ package, version }`, found an empty or unknown table",
        fix,
    )


def _read_files(r: TomlReader, value: object, key: str) -> tuple[FileMount, ...]:
    if not isinstance(value, list):
        r.expected(key, "an array of globs or `{ source, destination }` tables", value)
    mounts = []
    for index, item in enumerate(value):
        item_key = f"{key}[{index}]"
        if isinstance(item, str):
            if item == ".." or item.endswith("/..") or item == "." or item.endswith("/."):
                r.fail(
                    item_key,
                    f'the file pattern "{item}" ends in a directory path (. or ..)',
                    'use `{ source = "dir", destination = "/" }` or a glob ending in `**/*`',
                )
            mounts.append(FileMount(source=item))
        elif isinstance(item, dict):
            r.check_keys(item, item_key, ("source", "destination"), required=("source", "destination"))
            source = r.string(item["source"], f"{item_key}.source")
            destination = r.string(item["destination"], f"{item_key}.destination")
            if not destination.startswith("/"):
                r.fail(
                    f"{item_key}.destination",
                    f'destination "{destination}" is not absolute',
                    'start it with "/"',
                )
            mounts.append(FileMount(source=source, destination=destination))
        else:
            r.expected(item_key, "a glob string or a `{ source, destination }` table", item)
    return tuple(mounts)


def _read_outbound_hosts(
    r: TomlReader, t: dict[str, Any], key: str, defaults: dict[str, str], legacy: bool, warnings: list[str]
) -> tuple[str, ...]:
    hosts_key = f"{key}.allowed_outbound_hosts"
    hosts = list(r.string_list(t.get("allowed_outbound_hosts", []), hosts_key))
    if not legacy and "allowed_http_hosts" in t:
        http_key = f"{key}.allowed_http_hosts"
        converted = convert_allowed_http_hosts(r.string_list(t["allowed_http_hosts"], http_key), False)
        if isinstance(converted, str):
            r.fail(
                http_key,
                converted,
                "list hosts as `host` or `host:port` (and move to `allowed_outbound_hosts`)",
            )
        hosts += converted
        if converted:
            suggestion = ", ".join(f'"{h}"' for h in converted)
            warnings.append(
                f"{http_key} is deprecated: replace it with `allowed_outbound_hosts = [{suggestion}]`"
            )
    problem = outbound_hosts_problem(hosts, defaults)
    if problem:
        index, reason = problem
        r.fail(
            f"{hosts_key}[{index}]",
            f"`allowed_outbound_hosts` is malformed: {reason}",
            "write each entry as `scheme://host[:port]`, e.g. `https://api.example.com` or `redis://*:6379`",
        )
    return tuple(hosts)


def _read_build(r: TomlReader, value: object, key: str) -> BuildSpec:
    table = r.table(value, key, 'write it as `[component.NAME.build]` with `command = "..."`')
    r.check_keys(table, key, _BUILD_KEYS, required=("command",))
    command = table["command"]
    if isinstance(command, str):
        commands = [command]
    elif isinstance(command, list):
        commands = r.string_list(command, f"{key}.command")
    else:
        r.expected(f"{key}.command", "a command string or an array of command strings", command)
    if not commands or not all(c.strip() for c in commands):
        r.fail(
            f"{key}.command", "the build command is empty", 'give the command to run, e.g. `command = "make"`'
        )
    root = r.path.parent
    workdir = root
    if "workdir" in table:
        relative = r.string(table["workdir"], f"{key}.workdir")
        if Path(relative).is_absolute():
            r.fail(
                f"{key}.workdir",
                f'workdir "{relative}" is absolute',
                "give it relative to the spin.toml directory",
            )
        workdir = root / relative
    watch = r.string_list(table.get("watch", []), f"{key}.watch")
    return BuildSpec(command=tuple(commands), workdir=workdir, watch=tuple(watch))


_PRIVATE_ROUTE_KEYS = ("private",)


def _build_http_trigger(r: TomlReader, trigger: RawTrigger, warnings: list[str]) -> HttpTrigger | None:
    """An `[[trigger.http]]` as HttpTrigger; None for routes wasmdev does not serve from a
    component (`static_response`, `route = { private = true }`, no `route`)."""
    key, config = trigger.key, trigger.config
    r.check_keys(config, key, _HTTP_TRIGGER_KEYS)
    route = config.get("route")
    has_static = "static_response" in config
    if trigger.component and has_static:
        r.fail(
            key,
            f"Triggers must specify either component or static_response - {trigger.id} has both",
            "remove one",
        )
    if not trigger.component and not has_static:
        r.fail(
            key,
            f"Triggers must specify either component or static_response - {trigger.id} has neither",
            'add `component = "..."`',
        )
    executor = _read_executor(r, config.get("executor"), f"{key}.executor")
    if route is None:
        # Spin's manifest reader accepts this (trigger settings are opaque to it); its HTTP
        # trigger then refuses to start. Keep the app loadable and say why nothing is served.
        warnings.append(f'{key} has no `route`: it is not served (add `route = "/..."`)')
        return None
    if has_static:
        r.table(config["static_response"], f"{key}.static_response")
        warnings.append(f"{key}: `static_response` routes are served by Spin only, not by wasmdev")
    if isinstance(route, dict):
        r.check_keys(route, f"{key}.route", _PRIVATE_ROUTE_KEYS, required=_PRIVATE_ROUTE_KEYS)
        if r.boolean(route["private"], f"{key}.route.private") is not True:
            r.fail(
                f"{key}.route.private",
                "a private endpoint must set `private = true`",
                "set it to true or give a route path",
            )
        return None
    route = r.string(route, f"{key}.route", 'use a path such as `"/hello"` or `"/api/..."`')
    if has_static or trigger.component is None:
        return None
    if executor is None:
        return HttpTrigger(route=Route(route), component=trigger.component)
    return HttpTrigger(
        route=Route(route),
        component=trigger.component,
        executor=Executor.WAGI,
        wagi_argv=executor.get("argv", _WAGI_DEFAULTS.wagi_argv),
        wagi_entrypoint=executor.get("entrypoint", _WAGI_DEFAULTS.wagi_entrypoint),
    )


_EXECUTOR_TYPES = ("http", "spin", "wagi")


def _read_executor(r: TomlReader, value: object, key: str) -> dict[str, str] | None:
    """None for the default (wasi:http) executor, else the WAGI settings given."""
    if value is None:
        return None
    table = r.table(value, key, 'write it as `executor = { type = "wagi" }`')
    if "type" not in table:
        r.fail(key, "missing field `type`", 'add `type = "wagi"` (or `"http"`)')
    kind = r.string(table["type"], f"{key}.type")
    if kind not in _EXECUTOR_TYPES:
        r.fail(
            f"{key}.type",
            f"unknown variant `{kind}`, expected `http` or `wagi`",
            'use `type = "wagi"` or `type = "http"`',
        )
    if kind != "wagi":
        r.check_keys(table, key, ("type",))
        return None
    r.check_keys(table, key, ("type", "argv", "entrypoint"))
    settings = {}
    for name in ("argv", "entrypoint"):
        if name in table:
            settings[name] = r.string(table[name], f"{key}.{name}")
    return settings
