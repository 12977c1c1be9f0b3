"""Version-2 spin.toml read into the intermediate form shared with version 1.

Follows Spin's manifest crate (schema/v2.rs, normalize.rs): the top level, `[application]` and
variables deny unknown fields; trigger tables carry trigger-specific settings; triggers without
an `id` get the one Spin generates, and inline components (`component = { source = ... }`) are
lifted into the component map under Spin's generated id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from devenv.manifest_reader import TomlReader, key_join
from devenv.manifest_rules import kebab_problem, lower_snake_problem

_TOP_KEYS = ("spin_manifest_version", "application", "variables", "trigger", "component")
_APPLICATION_KEYS = ("name", "version", "description", "authors", "targets", "trigger", "tool")
_VARIABLE_KEYS = ("description", "required", "default", "secret")
TRIGGER_COMMON_KEYS = ("id", "component", "components", "dependencies")


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
    # (key, spec) for `component` and each `components.*` entry: an id, or an inline table until
    # the trigger ids that name inline components are known.
    specs: list[tuple[str, object]] = field(default_factory=list)


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
# Version 2
# ---------------------------------------------------------------------------------------------


def read_v2(r: TomlReader, doc: dict[str, Any]) -> RawManifest:
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
    table = r.table(value, key)
    check_variable_names(r, table, key)
    for name, spec in table.items():
        var_key = key_join(key, name)
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


def check_variable_names(r: TomlReader, names: Iterable[str], key: str, what: str = "variable name") -> None:
    """Variable names (application variables, a component's variables, v1 `config`) are lower_snake_case."""
    for name in names:
        reason = lower_snake_problem(name)
        if reason:
            r.fail(
                key_join(key, name),
                f"invalid {what} `{name}`: {reason}",
                "name variables in lower_snake_case, e.g. `api_host`",
            )


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
    config = {k: v for k, v in table.items() if k not in TRIGGER_COMMON_KEYS}
    trigger = RawTrigger(
        type=trigger_type,
        id=r.string(table.get("id", ""), f"{key}.id"),
        key=key,
        component=None,
        config=config,
        component_key=f"{key}.component",
    )
    trigger.specs = _component_specs(r, table, key)
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
        specs = trigger.specs
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
        specs = trigger.specs
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
