"""spin.toml → AppSpec, reading what Spin itself reads.

Spin's manifest crate is the reference (spinframework/spin, crates/manifest and crates/loader):
the top-level shape, `[application]`, variables and components deny unknown fields; trigger
tables carry trigger-specific settings, which for `http` are `route`, `executor` and
`static_response` (crates/http). Version 1 manifests are converted by ``manifest_v1`` to the
same intermediate form first, as Spin's own compat layer does.

Every problem is a ManifestError naming the file and the TOML key path; no other exception
escapes ``load_app`` for any input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from devenv.manifest_reader import TomlReader, key_join
from devenv.manifest_rules import (
    convert_allowed_http_hosts,
    kebab_problem,
    lower_snake_problem,
    outbound_hosts_problem,
)
from devenv.model import (
    AppSpec,
    BuildSpec,
    ComponentSpec,
    Executor,
    FileMount,
    HttpTrigger,
    Route,
)

MANIFEST_NAME = "spin.toml"
V2_FIX = 'set `spin_manifest_version = 2` (or `spin_manifest_version = "1"` for the legacy format)'

_TOP_KEYS = ("spin_manifest_version", "application", "variables", "trigger", "component")
_APPLICATION_KEYS = ("name", "version", "description", "authors", "targets", "trigger", "tool")
_VARIABLE_KEYS = ("description", "required", "default", "secret")
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
_TRIGGER_COMMON_KEYS = ("id", "component", "components", "dependencies")
_HTTP_TRIGGER_KEYS = (*_TRIGGER_COMMON_KEYS, "route", "executor", "static_response")
_WAGI_DEFAULTS = HttpTrigger(route=Route("/"), component="", executor=Executor.WAGI)


# ---------------------------------------------------------------------------------------------
# The intermediate form both manifest versions are read into
# ---------------------------------------------------------------------------------------------


@dataclass
class RawComponent:
    id: str
    table: dict[str, Any]
    key: str  # key path of the table, for errors: "component.api" or "component[0]"


@dataclass
class RawTrigger:
    type: str
    id: str
    key: str  # "trigger.http[0]", or "component[0].trigger" for version 1
    component: str | None  # a component id once inline components are lifted out
    config: dict[str, Any]  # trigger-type-specific keys (route, executor, …)
    component_key: str = ""  # where `component` was written, for errors


@dataclass
class RawManifest:
    version: int
    name: str
    app_version: str = ""
    description: str = ""
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    trigger_settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # [application.trigger.*]
    http_base_key: str = "application.trigger.http.base"  # where `base` is written
    components: dict[str, RawComponent] = field(default_factory=dict)
    triggers: list[RawTrigger] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def load_app(manifest_path: Path) -> AppSpec:
    """Read a spin.toml (version 2, or version 1 converted) into an AppSpec.

    A directory is read as its spin.toml, as `spin up -f DIR` does. Raises ManifestError.
    """
    path = Path(manifest_path).absolute()
    if path.is_dir():
        path = path / MANIFEST_NAME
    reader = TomlReader(path)
    doc = reader.load()
    version = detect_version(reader, doc)
    if version == 1:
        from devenv.manifest_v1 import read_v1  # deferred: it imports this module's types

        raw = read_v1(reader, doc)
    else:
        raw = _read_v2(reader, doc)
    return _build_app(reader, raw)


def guess_app_name(manifest_path: Path) -> str:
    """The app's name for lists and errors, even when its manifest cannot be read.

    The `[application] name` (or a v1 top-level `name`) when the file parses, else the name of
    the folder holding the manifest.
    """
    path = Path(manifest_path).absolute()
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        doc = TomlReader(path).load()
    except Exception:  # any unreadable manifest falls back to the folder name
        doc = {}
    application = doc.get("application")
    name = application.get("name") if isinstance(application, dict) else doc.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    return path.parent.name or "app"


def detect_version(reader: TomlReader, doc: dict[str, Any]) -> int:
    """1 or 2, as Spin's ManifestVersion::detect; `spin_version` is the old spelling."""
    if "spin_manifest_version" in doc and "spin_version" in doc:
        reader.fail(
            "spin_version", "duplicate field `spin_manifest_version`", "keep only `spin_manifest_version`"
        )
    key = "spin_version" if "spin_version" in doc else "spin_manifest_version"
    if key not in doc:
        reader.fail("", "missing field `spin_manifest_version`", f"{V2_FIX} at the top of the file")
    value = doc[key]
    if value == "1":
        return 1
    if value == 2 and not isinstance(value, bool):
        return 2
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    reader.fail(key, f"invalid manifest version: {shown}", V2_FIX)


# ---------------------------------------------------------------------------------------------
# Version 2
# ---------------------------------------------------------------------------------------------


def _read_v2(r: TomlReader, doc: dict[str, Any]) -> RawManifest:
    # Required keys are checked after the others so errors come in document order, as Spin's.
    r.check_keys(doc, "", _TOP_KEYS)
    if "application" not in doc:
        r.fail("", "missing field `application`", 'add an `[application]` table with `name = "..."`')
    app = r.table(doc["application"], "application")
    r.check_keys(app, "application", _APPLICATION_KEYS, required=("name",))
    raw = RawManifest(
        version=2,
        name=r.string(app["name"], "application.name"),
        app_version=r.string(app.get("version", ""), "application.version"),
        description=r.string(app.get("description", ""), "application.description"),
    )
    r.string_list(app.get("authors", []), "application.authors")
    settings = r.table(app.get("trigger", {}), "application.trigger")
    for trigger_type, value in settings.items():
        raw.trigger_settings[trigger_type] = r.table(value, key_join("application.trigger", trigger_type))
    raw.variables = read_variables(r, doc.get("variables", {}), "variables")

    components = r.table(doc.get("component", {}), "component")
    for component_id, table in components.items():
        key = key_join("component", component_id)
        _check_id(r, component_id, key, "component id")
        raw.components[component_id] = RawComponent(component_id, r.table(table, key), key)

    # Spin's `http-empty` template writes no trigger at all (`spin add` adds them later); an app
    # with nothing to serve is still an app, so a missing `trigger` table reads as empty.
    triggers = r.table(doc.get("trigger", {}), "trigger")
    for trigger_type, entries in triggers.items():
        type_key = key_join("trigger", trigger_type)
        if not isinstance(entries, list):
            r.expected(type_key, "an array of tables", entries, f"write each trigger as `[[{type_key}]]`")
        for index, entry in enumerate(entries):
            raw.triggers.append(_read_v2_trigger(r, trigger_type, entry, f"{type_key}[{index}]"))
    _normalize_trigger_ids(raw)
    _lift_inline_components(r, raw)
    return raw


def read_variables(r: TomlReader, value: object, key: str) -> dict[str, dict[str, Any]]:
    """Application variables: lower_snake_case names, each `{ description, required, default, secret }`."""
    variables: dict[str, dict[str, Any]] = {}
    for name, spec in r.table(value, key).items():
        var_key = key_join(key, name)
        reason = lower_snake_problem(name)
        if reason:
            r.fail(
                var_key,
                f"invalid variable name `{name}`: {reason}",
                "name variables in lower_snake_case, e.g. `api_host`",
            )
        spec = r.table(spec, var_key, 'write it as `{ default = "..." }` or `{ required = true }`')
        r.check_keys(spec, var_key, _VARIABLE_KEYS)
        for flag in ("required", "secret"):
            if flag in spec:
                r.boolean(spec[flag], f"{var_key}.{flag}")
        for text in ("default", "description"):
            if text in spec:
                r.string(spec[text], f"{var_key}.{text}")
        if bool(spec.get("required", False)) == ("default" in spec):
            r.fail(
                var_key,
                "must be `required` OR have a `default`",
                'give the variable either `required = true` or a `default = "..."`, not both or neither',
            )
        variables[name] = dict(spec)
    return variables


def _check_id(r: TomlReader, value: str, key: str, what: str) -> None:
    reason = kebab_problem(value)
    if reason:
        suggestion = value.replace("_", "-").lower()
        fix = (
            f"use `{suggestion}`"
            if kebab_problem(suggestion) is None
            else "use lowercase words separated by '-'"
        )
        r.fail(key, f"invalid {what} `{value}`: {reason}", f"{fix} (ids are kebab-case, e.g. `my-component`)")


def _read_v2_trigger(r: TomlReader, trigger_type: str, entry: object, key: str) -> RawTrigger:
    table = r.table(entry, key, f"write the trigger as `[[trigger.{trigger_type}]]`")
    config = {k: v for k, v in table.items() if k not in _TRIGGER_COMMON_KEYS}
    trigger = RawTrigger(
        type=trigger_type,
        id=r.string(table.get("id", ""), f"{key}.id"),
        key=key,
        component=None,
        config=config,
        component_key=f"{key}.component",
    )
    # Inline components stay as tables here until trigger ids are known (they name them).
    trigger.config["__component_specs__"] = _component_specs(r, table, key)
    if "dependencies" in table:
        r.table(table["dependencies"], f"{key}.dependencies")
    return trigger


def _component_specs(r: TomlReader, table: dict[str, Any], key: str) -> list[tuple[str, object]]:
    """Every (key, spec) naming a component in this trigger: `component` then `components.*`."""
    specs: list[tuple[str, object]] = []
    if "component" in table:
        specs.append((f"{key}.component", table["component"]))
    components = r.table(table.get("components", {}), f"{key}.components")
    for name, value in components.items():
        ckey = key_join(f"{key}.components", name)
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            specs.append((f"{ckey}[{index}]" if isinstance(value, list) else ckey, item))
    for spec_key, spec in specs:
        if isinstance(spec, str):
            _check_id(r, spec, spec_key, "component reference")
        elif not isinstance(spec, dict):
            r.expected(spec_key, "a component id or an inline component table", spec)
    return specs


def _normalize_trigger_ids(raw: RawManifest) -> None:
    """Give each trigger without an `id` the one Spin would (normalize_trigger_ids)."""
    taken = {t.id for t in raw.triggers}
    counters: dict[str, int] = {}
    for trigger in raw.triggers:
        if trigger.id:
            continue
        specs = trigger.config["__component_specs__"]
        first = specs[0][1] if specs and specs[0][0].endswith(".component") else None
        if isinstance(first, str):
            candidate = f"{first}-{trigger.type}-trigger"
            if candidate not in taken:
                trigger.id = candidate
                taken.add(candidate)
                continue
        counter = counters.get(trigger.type, 1)
        while f"{trigger.type}-trigger{counter}" in taken:
            counter += 1
        trigger.id = f"{trigger.type}-trigger{counter}"
        taken.add(trigger.id)
        counters[trigger.type] = counter


def _lift_inline_components(r: TomlReader, raw: RawManifest) -> None:
    """Move inline components into the component map under the id Spin generates
    (`<trigger-id>-component`, else `inline-component<N>`), and check every reference."""
    for trigger in raw.triggers:
        specs = trigger.config.pop("__component_specs__")
        counter = 1
        for spec_key, spec in specs:
            if isinstance(spec, dict):
                natural = f"{trigger.id}-component"
                if len(specs) == 1 and kebab_problem(natural) is None and natural not in raw.components:
                    component_id = natural
                else:
                    while f"inline-component{counter}" in raw.components:
                        counter += 1
                    component_id = f"inline-component{counter}"
                raw.components[component_id] = RawComponent(component_id, spec, spec_key)
            else:
                component_id = spec
                if component_id not in raw.components:
                    declared = ", ".join(f"`{c}`" for c in raw.components) or "none"
                    r.fail(
                        spec_key,
                        f"the trigger refers to component `{component_id}`, which is not defined (components: {declared})",
                        f"add a `[component.{component_id}]` table or fix the reference",
                    )
            if spec_key == trigger.component_key:
                trigger.component = component_id


# ---------------------------------------------------------------------------------------------
# From the intermediate form to the model
# ---------------------------------------------------------------------------------------------


def _build_app(r: TomlReader, raw: RawManifest) -> AppSpec:
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
    for name in variables:
        reason = lower_snake_problem(name)
        if reason:
            r.fail(
                key_join(f"{key}.variables", name),
                f"invalid variable name `{name}`: {reason}",
                "use lower_snake_case",
            )
    for list_key in ("key_value_stores", "sqlite_databases", "ai_models"):
        r.string_list(t.get(list_key, []), f"{key}.{list_key}")
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
