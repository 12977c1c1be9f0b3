"""Version-1 spin.toml (`spin_manifest_version = "1"`, `[[component]]` with `id`) read into the
same intermediate form as version 2, following Spin's compat::v1_to_v2_app:

- the app-wide `trigger = { type = "http", base = "/" }` becomes `[application.trigger.http]`;
- each component's `[component.trigger]` becomes a trigger of that type with id
  `trigger-<component id>`;
- ids in snake_case or mixedCase are rewritten to kebab-case (`my_comp` → `my-comp`);
- `config` becomes component `variables`;
- `allowed_http_hosts` is converted to `allowed_outbound_hosts`, and a component that does not
  set `allowed_outbound_hosts` keeps the database access v1 granted by default.

Errors name the v1 keys as written (`component[0].trigger.route`), not the converted form.
"""

from __future__ import annotations

from typing import Any

from devenv.manifest_reader import TomlReader
from devenv.manifest_rules import (
    convert_allowed_http_hosts,
    kebab_from_legacy_id,
    kebab_problem,
)
from devenv.manifest_v2 import RawComponent, RawManifest, RawTrigger, check_variable_names, read_variables

_TOP_KEYS = (
    "spin_manifest_version",
    "spin_version",
    "name",
    "version",
    "description",
    "authors",
    "trigger",
    "variables",
    "component",
)
_COMPONENT_KEYS = (
    "id",
    "source",
    "trigger",
    "description",
    "config",
    "environment",
    "files",
    "exclude_files",
    "allowed_http_hosts",
    "allowed_outbound_hosts",
    "key_value_stores",
    "sqlite_databases",
    "ai_models",
    "build",
)
# Keys copied unchanged into the version-2 component table.
_SAME_IN_V2 = (
    "source",
    "description",
    "environment",
    "files",
    "exclude_files",
    "key_value_stores",
    "sqlite_databases",
    "ai_models",
    "build",
)


def read_v1(r: TomlReader, doc: dict[str, Any]) -> RawManifest:
    r.check_keys(doc, "", _TOP_KEYS, required=("name", "trigger"))
    raw = RawManifest(
        version=1,
        name=r.string(doc["name"], "name"),
        app_version=r.string(doc.get("version", ""), "version"),
        description=r.string(doc.get("description", ""), "description"),
    )
    r.string_list(doc.get("authors", []), "authors")
    app_trigger = dict(r.table(doc["trigger"], "trigger", 'write it as `trigger = { type = "http" }`'))
    if "type" not in app_trigger:
        r.fail("trigger", "missing field `type`", 'add `type = "http"` (or the trigger type the app uses)')
    trigger_type = r.string(app_trigger.pop("type"), "trigger.type")
    raw.trigger_settings = {trigger_type: app_trigger}
    raw.http_base_key = "trigger.base"
    raw.variables = read_variables(r, doc.get("variables", {}), "variables")

    components = doc.get("component", [])
    if not isinstance(components, list):
        r.expected("component", "an array of tables", components, "write each component as `[[component]]`")
    for index, entry in enumerate(components):
        component, trigger = _read_component(r, entry, f"component[{index}]", trigger_type)
        if component.id in raw.components:
            r.fail(
                f"{component.key}.id",
                f"cannot have duplicate component IDs: {component.id}",
                "give each `[[component]]` a different `id`",
            )
        raw.components[component.id] = component
        raw.triggers.append(trigger)
    return raw


def _read_component(
    r: TomlReader, entry: object, key: str, trigger_type: str
) -> tuple[RawComponent, RawTrigger]:
    table = r.table(entry, key, "write each component as `[[component]]`")
    r.check_keys(table, key, _COMPONENT_KEYS, required=("id", "source", "trigger"))
    written_id = r.string(table["id"], f"{key}.id")
    component_id = kebab_from_legacy_id(written_id)
    reason = kebab_problem(component_id)
    if reason:
        r.fail(
            f"{key}.id",
            f"invalid ID `{component_id}`: {reason}",
            "use lowercase words of letters and digits separated by '-', e.g. `my-component`",
        )
    converted = {name: table[name] for name in _SAME_IN_V2 if name in table}
    config = r.string_map(table.get("config", {}), f"{key}.config")
    check_variable_names(r, config, f"{key}.config", what="ID")
    converted["variables"] = config

    http_key = f"{key}.allowed_http_hosts"
    http_hosts = r.string_list(table.get("allowed_http_hosts", []), http_key)
    outbound = table.get("allowed_outbound_hosts")
    extra = convert_allowed_http_hosts(http_hosts, allow_database_access=outbound is None)
    if isinstance(extra, str):
        r.fail(http_key, extra, "list hosts as `host` or `host:port` (or use `allowed_outbound_hosts`)")
    if outbound is not None:
        extra = [*r.string_list(outbound, f"{key}.allowed_outbound_hosts"), *extra]
    converted["allowed_outbound_hosts"] = extra

    trigger_config = dict(r.table(table["trigger"], f"{key}.trigger", "write it as `[component.trigger]`"))
    trigger = RawTrigger(
        type=trigger_type,
        id=f"trigger-{component_id}",
        key=f"{key}.trigger",
        component=component_id,
        config=trigger_config,
        component_key=f"{key}.id",
    )
    return RawComponent(component_id, converted, key), trigger
