"""Build a component's ``SpinHost`` at deploy, as Spin resolves the same app.

Variables: a component's ``[component.X.variables]`` are templates (``"{{ name }}"``, literal
text around and between expressions) over the application's ``[variables]``. Each application
variable is looked up in Spin's provider order: the runtime config's ``[[variables_provider]]``
tables as listed, then the environment's ``SPIN_VARIABLE_<NAME>``
(upper-cased; also read from a ``.env`` file in the app folder, as Spin's environment provider
does), then the variable's ``default``. A required variable no provider has fails the deploy
with its name and the fix; the previous version keeps serving.

Stores: ``key_value_stores`` and ``sqlite_databases`` grant labels. ``default`` lives in the app's
``.spin/`` folder; any other label must be defined in the runtime config file, or the deploy
fails naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from devenv.errors import DeployError
from devenv.manifest_rules import split_template
from devenv.model import AppSpec, ComponentSpec
from devenv.runtime_config import RuntimeConfig, VariableProvider
from devenv.targets.local.spin.state import (
    DEFAULT_KV_FILE,
    DEFAULT_SQLITE_FILE,
    DEFAULT_STATE_DIR,
    KV_TABLE,
    KvStore,
    SpinHost,
    SqliteFile,
)

ENV_PREFIX = "SPIN_VARIABLE_"
_NAME = re.compile(r"^[a-z](?:[a-z0-9]|_(?=[a-z0-9]))*$")


def valid_variable_name(name: str) -> bool:
    """Spin's ``Key`` rule: lower-case letters, digits, single underscores; starts with a letter,
    ends with a letter or digit."""
    return bool(_NAME.match(name))


def template_parts(template: str) -> list[tuple[bool, str]]:
    """(is_expression, text) parts of a Spin template; raises ValueError for an unmatched ``{{``.
    The manifest's own parser: a template the manifest check accepted is split the same way here."""
    parts = split_template(template)
    if isinstance(parts, str):
        raise ValueError(parts)
    return parts


def dotenv(app_root: Path) -> dict[str, str]:
    """``KEY=value`` lines of the app's ``.env`` file (quotes stripped, ``#`` comments skipped)."""
    return dotenv_file(app_root / ".env")


def dotenv_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _provider_lookups(
    providers: tuple[VariableProvider, ...], env: Mapping[str, str]
) -> list[Callable[[str], str | None]]:
    """The runtime config's providers as listed (Spin asks them before ``SPIN_VARIABLE_*``)."""
    lookups: list[Callable[[str], str | None]] = []
    for provider in providers:
        if provider.kind == "static":
            lookups.append(provider.values.get)
            continue
        path = provider.dotenv_path
        file_values = dotenv_file(path) if path is not None else {}

        def from_env(
            name: str, prefix: str = provider.prefix, file_values: dict[str, str] = file_values
        ) -> str | None:
            key = f"{prefix}_{name.upper()}"
            return env.get(key, file_values.get(key))

        lookups.append(from_env)
    return lookups


def resolve_variables(
    app: AppSpec,
    component: ComponentSpec,
    env: Mapping[str, str],
    providers: tuple[VariableProvider, ...] = (),
) -> tuple[dict[str, str], frozenset[str]]:
    """The component's variables with every template filled in, and the names whose value uses a
    secret application variable. Raises ``DeployError`` naming the variable and the fix."""
    where = f"{app.manifest_path} [component.{component.id}.variables]"
    from_file = dotenv(app.root)
    lookups = _provider_lookups(providers, env)
    app_values: dict[str, str] = {}

    def app_value(name: str, used_by: str) -> str:
        if name in app_values:
            return app_values[name]
        spec = app.variables.get(name)
        if spec is None:
            raise DeployError(
                what=f"variable `{used_by}` uses `{{{{ {name} }}}}`, which is not an application variable",
                where=where,
                fix=f'declare it under [variables] in spin.toml, e.g. {name} = {{ default = "..." }}',
            )
        env_key = ENV_PREFIX + name.upper()
        value = next((v for v in (lookup(name) for lookup in lookups) if v is not None), None)
        if value is None:
            value = env.get(env_key, from_file.get(env_key))
        if value is None and "default" in spec:
            value = str(spec["default"])
        if value is None:
            raise DeployError(
                what=f"required variable `{name}` has no value (app `{app.name}`, used by "
                f"component `{component.id}`)",
                where=f"{app.manifest_path} [variables.{name}]",
                fix=f"set {env_key}=... in the environment of `wasmdev up` (or in the app's .env file), "
                "or give the variable a default",
            )
        app_values[name] = value
        return value

    resolved: dict[str, str] = {}
    secrets: set[str] = set()
    for name, template in component.variables.items():
        try:
            parts = template_parts(template)
        except ValueError as err:
            raise DeployError(
                what=f"variable `{name}` is not a valid template: {err}",
                where=where,
                fix='write expressions as "{{ app_variable }}"',
            ) from None
        text: list[str] = []
        for is_expr, part in parts:
            if not is_expr:
                text.append(part)
                continue
            text.append(app_value(part, name))
            if app.variables.get(part, {}).get("secret", False):
                secrets.add(name)
        resolved[name] = "".join(text)
    return resolved, frozenset(secrets)


def build_spin_host(
    app: AppSpec,
    component: ComponentSpec,
    env: Mapping[str, str],
    runtime_config: RuntimeConfig | None,
    files: dict[Path | None, SqliteFile] | None = None,
) -> SpinHost:
    """The component's ``SpinHost``. ``files`` shares open SQLite files between the components
    of one deploy (pass the same dict for each); raises ``DeployError``."""
    config = runtime_config or RuntimeConfig()
    variables, secrets = resolve_variables(app, component, env, config.variable_providers)
    state = app.root / DEFAULT_STATE_DIR
    shared: dict[Path | None, SqliteFile] = files if files is not None else {}

    def file(path: Path | None, setup: str) -> SqliteFile:
        if path is None:  # in-memory: one per label, never shared
            return SqliteFile(None, setup)
        if path not in shared:
            shared[path] = SqliteFile(path, setup)
        return shared[path]

    kv: dict[str, KvStore] = {}
    for label in component.key_value_stores:
        if label in config.key_value_stores:
            kv[label] = KvStore(label, file(config.key_value_stores[label].path, KV_TABLE))
        elif label == "default":
            kv[label] = KvStore(label, file(state / DEFAULT_KV_FILE, KV_TABLE))
        else:
            raise _undefined(app, component, "key_value_stores", "key_value_store", label, config)
    dbs: dict[str, SqliteFile] = {}
    for label in component.sqlite_databases:
        if label in config.sqlite_databases:
            dbs[label] = file(config.sqlite_databases[label].path, "")
        elif label == "default":
            dbs[label] = file(state / DEFAULT_SQLITE_FILE, "")
        else:
            raise _undefined(app, component, "sqlite_databases", "sqlite_database", label, config)
    return SpinHost(
        component_id=component.id,
        variables=MappingProxyType(variables),
        key_value_stores=MappingProxyType(kv),
        sqlite_databases=MappingProxyType(dbs),
        secret_names=secrets,
    )


def _undefined(
    app: AppSpec, component: ComponentSpec, key: str, table: str, label: str, config: RuntimeConfig
) -> DeployError:
    source = f"runtime config file {config.path}" if config.path else "no runtime config file was given"
    return DeployError(
        what=f"component `{component.id}` of app `{app.name}` is granted {key.removesuffix('s')} "
        f"`{label}`, which is not defined ({source})",
        where=f"{app.manifest_path} [component.{component.id}] {key}",
        fix=f'define [{table}.{label}] with type = "spin" and a path in a runtime config file and pass it '
        "with `wasmdev up --runtime-config-file FILE` (only `default` needs none)",
    )
