"""Which imports of a component this host serves, decided at deploy.

A WASI 0.2 interface we lack (``wasi:sockets``, which every componentize-py component imports
whether or not it opens a socket) stays a logged trap: refusing it would refuse every Python app.
Anything else we lack (Spin's LLM inferencing, a WASI draft we do not ship) is refused before
the new version serves, naming the app, the component, the import and the fix, never found by
the first request.
"""

from __future__ import annotations

from collections.abc import Iterable

from devenv.targets.local.wasi.registry import Interface, split_version

# What each refused import is, for the message; the fix is the same for all of them.
_WHAT = {
    "mysql": "outbound MySQL",
    "mqtt": "outbound MQTT",
    "llm": "Spin's LLM inferencing",
    "redis": "outbound Redis",
    "postgres": "outbound PostgreSQL",
    "otel": "OpenTelemetry export",
    "watch": "key-value watch",
}
REFUSED_FIX = (
    "install Spin (https://spinframework.dev/install) and wasmdev serves the app under `spin up` "
    '(`[local] runtime = "spin"` for an app that imports Spin\'s whole platform world), run it on '
    "the cluster target (`wasmdev up --target k3d`), or remove the calls that need it"
)
HOSTED = (
    "variables, key-value, SQLite, outbound Redis, PostgreSQL, MySQL and MQTT (fermyon:spin@2.0.0, spin:up@3.x), "
    "WASI 0.2"
)


def describe(import_name: str) -> str:
    tail = import_name.split("@", 1)[0].rsplit("/", 1)[-1]
    what = _WHAT.get(tail)
    return f"{import_name} ({what})" if what else import_name


# Spin 2's platform world. componentize-py imports every one of these as soon as an app uses one
# (tests/apps/spin-llm-py imports mqtt, redis, mysql, ... to call the LLM; spin-apis-py imports
# MySQL to call key-value), so finding one of them among the imports says nothing about its use.
PLATFORM_2 = frozenset(
    f"fermyon:spin/{name}@2.0.0"
    for name in (
        "llm",
        "redis",
        "mqtt",
        "rdbms-types",
        "postgres",
        "mysql",
        "sqlite",
        "key-value",
        "variables",
    )
)

# Spin 3's platform worlds (fermyon:spin@3.0.0, spin:up@3.2.0 and @3.4.0) add these to Spin 2's;
# componentize-py imports them all too for a component built for spin:up/http-trigger@3.x.
PLATFORM_3 = PLATFORM_2 | frozenset(
    {
        "wasi:keyvalue/store@0.2.0-draft2",
        "wasi:keyvalue/atomics@0.2.0-draft2",
        "wasi:keyvalue/batch@0.2.0-draft2",
        "wasi:config/store@0.2.0-draft-2024-09-27",
        "spin:postgres/postgres@3.0.0",
        "spin:postgres/postgres@4.0.0",
        "spin:sqlite/sqlite@3.0.0",
    }
)


def unhosted_imports(imports: Iterable[str], interfaces: Iterable[Interface]) -> list[str]:
    """The imports that would only ever trap: neither defined by ``interfaces`` nor a WASI 0.2
    interface left to a logged trap (nor an interface of types only, ``rdbms-types``)."""
    names = {i.name for i in interfaces}
    unhosted: list[str] = []
    for import_name in imports:
        name, is_02 = split_version(import_name)
        if (name if is_02 else import_name) in names:
            continue
        if is_02 and name.startswith("wasi:"):
            continue
        if import_name.startswith("fermyon:spin/rdbms-types@"):
            continue
        unhosted.append(import_name)
    return unhosted


def split_unhosted(imports: Iterable[str], interfaces: Iterable[Interface]) -> tuple[list[str], list[str]]:
    """(refused, bundled): unhosted imports that refuse the deploy, and unhosted imports that
    came with a whole Spin 2/3 platform world (the component may never call them: the deploy
    goes on with a note, and a call traps with the same words)."""
    imports = list(imports)
    unhosted = unhosted_imports(imports, interfaces)
    whole_platform = PLATFORM_2 <= set(imports)
    bundled = [i for i in unhosted if whole_platform and i in PLATFORM_3]
    return [i for i in unhosted if i not in bundled], bundled
