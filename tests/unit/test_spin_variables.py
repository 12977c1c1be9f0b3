"""Spin's variable resolution (templates, providers, required, secret) on the local target."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from devenv.errors import DeployError
from devenv.model import AppSpec, ComponentSpec
from devenv.targets.local.spin.resolve import (
    build_spin_host,
    resolve_variables,
    template_parts,
    valid_variable_name,
)


def app(
    tmp_path: Path, variables: dict, component_vars: dict, **grants: tuple[str, ...]
) -> tuple[AppSpec, ComponentSpec]:
    component = ComponentSpec(id="web", source=None, variables=MappingProxyType(component_vars), **grants)
    spec = AppSpec(
        name="demo",
        manifest_path=tmp_path / "spin.toml",
        components=MappingProxyType({"web": component}),
        variables=MappingProxyType({k: MappingProxyType(v) for k, v in variables.items()}),
    )
    return spec, component


def test_template_parts_as_spin_splits_them() -> None:
    assert template_parts("a-{{ x }}-b") == [(False, "a-"), (True, "x"), (False, "-b")]
    assert template_parts("{{x}}{{ y }}") == [(True, "x"), (True, "y")]
    assert template_parts("") == []
    with pytest.raises(ValueError):
        template_parts("{{ open")


def test_names_follow_spins_key_rule() -> None:
    assert valid_variable_name("api_key2")
    for bad in ("", "Api", "2x", "a__b", "a_", "a-b"):
        assert not valid_variable_name(bad)


def test_environment_then_dotenv_then_default(tmp_path: Path) -> None:
    spec, component = app(
        tmp_path,
        {"host": {"default": "example.com"}, "port": {"default": "80"}, "user": {"required": True}},
        {"url": "http://{{ user }}@{{host}}:{{ port }}/", "lit": "x"},
    )
    (tmp_path / ".env").write_text('# comment\nSPIN_VARIABLE_USER="bob"\nSPIN_VARIABLE_PORT=81\n')
    values, secrets = resolve_variables(spec, component, {"SPIN_VARIABLE_PORT": "8080"})
    assert values == {"url": "http://bob@example.com:8080/", "lit": "x"}
    assert secrets == frozenset()


def test_a_missing_required_variable_names_itself_and_the_fix(tmp_path: Path) -> None:
    spec, component = app(tmp_path, {"token": {"required": True, "secret": True}}, {"t": "{{ token }}"})
    with pytest.raises(DeployError) as caught:
        resolve_variables(spec, component, {})
    assert "`token`" in caught.value.what and "SPIN_VARIABLE_TOKEN" in caught.value.fix
    assert "[variables.token]" in caught.value.where


def test_an_unknown_variable_in_a_template_is_refused(tmp_path: Path) -> None:
    spec, component = app(tmp_path, {}, {"t": "{{ nope }}"})
    with pytest.raises(DeployError) as caught:
        resolve_variables(spec, component, {})
    assert "`{{ nope }}`" in caught.value.what


def test_a_secret_never_shows_in_the_hosts_repr(tmp_path: Path) -> None:
    spec, component = app(
        tmp_path, {"token": {"required": True, "secret": True}}, {"t": "Bearer {{ token }}"}
    )
    host = build_spin_host(spec, component, {"SPIN_VARIABLE_TOKEN": "hunter2"}, None)
    assert host.variables["t"] == "Bearer hunter2"
    assert host.secret_names == frozenset({"t"})
    assert "hunter2" not in repr(host)


def test_default_stores_live_in_dot_spin(tmp_path: Path) -> None:
    spec, component = app(tmp_path, {}, {}, key_value_stores=("default",), sqlite_databases=("default",))
    host = build_spin_host(spec, component, {}, None)
    assert host.key_value_stores["default"].file.path == tmp_path / ".spin" / "sqlite_key_value.db"
    assert host.sqlite_databases["default"].path == tmp_path / ".spin" / "sqlite_db.db"
    assert not (tmp_path / ".spin").exists()  # created on first use, not at deploy


def test_runtime_config_providers_come_before_the_environment(tmp_path: Path) -> None:
    from devenv.runtime_config import load_runtime_config

    rc = tmp_path / "rc.toml"
    (tmp_path / "vars.env").write_text("MYAPP_REGION=from-dotenv\n")
    rc.write_text(
        '[[variables_provider]]\ntype = "static"\nvalues = { host = "static.example" }\n\n'
        '[[variables_provider]]\ntype = "env"\nprefix = "MYAPP"\ndotenv_path = "vars.env"\n'
    )
    spec, component = app(
        tmp_path,
        {"host": {"default": "d"}, "region": {"default": "d"}, "zone": {"default": "dz"}},
        {"where": "{{ host }}/{{ region }}/{{ zone }}"},
    )
    env = {"SPIN_VARIABLE_HOST": "env-loses", "SPIN_VARIABLE_ZONE": "env-zone"}
    host = build_spin_host(spec, component, env, load_runtime_config(rc))
    assert host.variables["where"] == "static.example/from-dotenv/env-zone"


def test_a_vault_provider_is_refused_naming_it(tmp_path: Path) -> None:
    from devenv.errors import ManifestError
    from devenv.runtime_config import load_runtime_config

    rc = tmp_path / "rc.toml"
    rc.write_text('[[variables_provider]]\ntype = "vault"\nurl = "http://vault"\n')
    with pytest.raises(ManifestError) as caught:
        load_runtime_config(rc)
    assert "variables_provider[0]" in caught.value.where and "'vault'" in caught.value.what
