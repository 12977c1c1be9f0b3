"""wasmdev reads spin.toml as Spin does: checked against Spin's own manifest test suite and every
real spin.toml from Spin's repository (see /work/shared/conformance/README.md).

- Valid manifests load, and agree with Spin's normalized `.json` on what each key means.
- Version-1 manifests load to the same app as Spin's own `.toml.v2` conversion of them.
- Every invalid case raises ManifestError carrying the essence of Spin's `.err` message.
- Templates load once their `{{ placeholders }}` are filled as `spin new` would fill them.

The data lives outside the repo (../shared); CI always has it. Without it the tests skip and say
where they looked.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from devenv.errors import ManifestError
from devenv.manifest import load_app
from devenv.model import AppSpec, Executor


def _conformance_dir() -> Path:
    override = os.environ.get("WASMDEV_CONFORMANCE_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "shared" / "conformance" / "spin"


SPIN = _conformance_dir()
MISSING = f"Spin conformance data not found at {SPIN} (set WASMDEV_CONFORMANCE_DIR to its spin/ folder)"
MANIFEST_UI = SPIN / "crates" / "manifest" / "tests" / "ui"
LOADER_UI = SPIN / "crates" / "loader" / "tests" / "ui"


def _params(paths: list[Path]) -> list:
    if not SPIN.is_dir():
        return [pytest.param(None, id="conformance-data-missing", marks=pytest.mark.skip(reason=MISSING))]
    return [pytest.param(p, id=str(p.relative_to(SPIN))) for p in sorted(paths)]


def _glob(base: Path, pattern: str) -> list[Path]:
    return list(base.glob(pattern)) if base.is_dir() else []


JSON_CASES = [
    p
    for p in _glob(MANIFEST_UI, "*.toml") + _glob(MANIFEST_UI, "v1/*.toml")
    if p.with_suffix(".json").exists()
]
V1_CASES = [p for p in _glob(MANIFEST_UI, "v1/*.toml") if Path(f"{p}.v2").exists()]
INVALID_CASES = _glob(MANIFEST_UI, "invalid/*.toml") + [
    p for p in _glob(LOADER_UI, "*.toml") if p.with_suffix(".err").exists()
]
LOADER_VALID = [p for p in _glob(LOADER_UI, "*.toml") if not p.with_suffix(".err").exists()] + _glob(
    LOADER_UI, "*/spin.toml"
)
REAL_MANIFESTS = [p for p in _glob(SPIN, "**/spin.toml") if "templates" not in p.relative_to(SPIN).parts]
TEMPLATES = _glob(SPIN, "templates/*/content/spin.toml")

# Where our wording legitimately differs from Spin's last line: the TOML syntax error comes from
# a different parser, so the position is the shared essence.
ESSENCE_OVERRIDES = {"crates/loader/tests/ui/invalid-manifest.toml": "line 6, column 4"}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

_PORT_PLACEHOLDER = re.compile(r"%\{port=(\d+)\}")


def _load_filled(path: Path, tmp_path: Path) -> AppSpec:
    """Spin's integration tests write `%{port=N}` for a port their harness picks; fill it as the
    harness does (with the default) before reading."""
    text = path.read_text()
    if "%{port=" not in text:
        return load_app(path)
    copy = tmp_path / "spin.toml"
    copy.write_text(_PORT_PLACEHOLDER.sub(r"\1", text))
    return load_app(copy)


def _essence(err_file: Path) -> str:
    """The last meaningful line of Spin's message, without anyhow's `N: ` cause numbering."""
    lines = [line.strip() for line in err_file.read_text().splitlines() if line.strip()]
    return re.sub(r"^\d+: ", "", lines[-1])


def _files_as_json(app_component) -> list:
    return [
        m.source if m.destination is None else {"source": m.source, "destination": m.destination}
        for m in app_component.files
    ]


# ---------------------------------------------------------------------------------------------
# Valid manifests agree with Spin's normalized JSON
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("toml_path", _params(JSON_CASES))
def test_valid_manifest_agrees_with_spin_json(toml_path: Path) -> None:
    expected = json.loads(toml_path.with_suffix(".json").read_text())
    app = load_app(toml_path)
    root = toml_path.parent

    application = expected["application"]
    assert app.name == application["name"]
    assert app.version == application.get("version", "")
    assert app.description == application.get("description", "")
    assert set(app.variables) == set(expected.get("variables", {}))
    for name, spec in expected.get("variables", {}).items():
        assert dict(app.variables[name]) == spec

    expected_components = expected.get("component", {})
    for component_id, spec in expected_components.items():
        component = app.components[component_id]
        source = spec["source"]
        if isinstance(source, str):
            assert component.source == root / source
            assert component.source_url is None
        else:
            assert component.source is None
            assert (component.source_url, component.source_digest) == (source["url"], source["digest"])
        assert component.description == spec.get("description", "")
        assert dict(component.environment) == spec.get("environment", {})
        assert _files_as_json(component) == spec.get("files", [])
        assert list(component.exclude_files) == spec.get("exclude_files", [])
        assert list(component.allowed_outbound_hosts) == spec.get("allowed_outbound_hosts", [])
        build = spec.get("build")
        if build is None:
            assert component.build is None
        else:
            command = build["command"]
            assert list(component.build.command) == ([command] if isinstance(command, str) else command)
            assert component.build.workdir == root / build.get("workdir", "")
            assert list(component.build.watch) == build.get("watch", [])

    # Inline trigger components are lifted into the component map: one each, same source.
    inline_sources = [
        root / spec["source"]
        for triggers in expected.get("trigger", {}).values()
        for trigger in triggers
        for spec in [trigger.get("component"), *trigger.get("components", {}).values()]
        if isinstance(spec, dict)
    ]
    lifted = [c.source for cid, c in app.components.items() if cid not in expected_components]
    assert sorted(map(str, lifted)) == sorted(map(str, inline_sources))

    trigger_types = set(expected.get("trigger", {})) | set(application.get("trigger", {}))
    assert set(app.other_triggers) == trigger_types - {"http"}
    served = [t for t in expected.get("trigger", {}).get("http", []) if "route" in t]
    assert len(app.http_triggers) == len(served)
    for trigger, spec in zip(app.http_triggers, served, strict=True):
        assert trigger.route.path == spec["route"]
        if isinstance(spec["component"], str):
            assert trigger.component == spec["component"]


def test_normalization_names_inline_components_as_spin_does() -> None:
    case = MANIFEST_UI / "normalization.toml"
    if not case.exists():
        pytest.skip(MISSING)
    normalized = tomllib.loads(Path(f"{case}.norm").read_text())
    app = load_app(case)
    assert set(app.components) == set(normalized["component"])
    for component_id, spec in normalized["component"].items():
        assert app.components[component_id].source == case.parent / spec["source"]


@pytest.mark.parametrize("toml_path", _params(V1_CASES))
def test_v1_manifest_reads_like_spins_v2_conversion(toml_path: Path, tmp_path: Path) -> None:
    converted_copy = tmp_path / toml_path.name
    converted_copy.write_text(Path(f"{toml_path}.v2").read_text())
    v1 = load_app(toml_path)
    v2 = load_app(converted_copy)
    assert v1.manifest_version == 1 and v2.manifest_version == 2

    def comparable(app: AppSpec) -> AppSpec:
        # Paths differ only because the copy lives elsewhere; compare them relative to the root.
        components = {
            cid: replace(c, source=c.source.relative_to(app.root) if c.source else None, build=None)
            for cid, c in app.components.items()
        }
        return replace(
            app, manifest_path=Path("spin.toml"), components=components, manifest_version=0, warnings=()
        )

    assert comparable(v1) == comparable(v2)


# ---------------------------------------------------------------------------------------------
# Real manifests: loader cases, examples, integration tests
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("toml_path", _params(LOADER_VALID + REAL_MANIFESTS))
def test_real_manifest_loads(toml_path: Path, tmp_path: Path) -> None:
    app = _load_filled(toml_path, tmp_path)
    assert app.name
    for trigger in app.http_triggers:
        assert trigger.component in app.components
        assert trigger.route.path
    for component in app.components.values():
        assert (component.source is None) != (component.source_url is None)
        if component.build is not None:
            assert component.build.command and component.build.workdir.is_absolute()


def test_wagi_executor_with_custom_entrypoint() -> None:
    case = LOADER_UI / "wagi-custom-entrypoint.toml"
    if not case.exists():
        pytest.skip(MISSING)
    (trigger,) = load_app(case).http_triggers
    assert trigger.executor is Executor.WAGI
    assert trigger.wagi_entrypoint == "custom-entrypoint"
    assert trigger.wagi_argv == "${SCRIPT_NAME} ${ARGS}"


# ---------------------------------------------------------------------------------------------
# Invalid manifests are rejected with Spin's reason
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("toml_path", _params(INVALID_CASES))
def test_invalid_manifest_is_rejected_with_spins_reason(toml_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        load_app(toml_path)
    err = caught.value
    essence = ESSENCE_OVERRIDES.get(str(toml_path.relative_to(SPIN)), _essence(toml_path.with_suffix(".err")))
    assert essence in str(err)
    assert err.path == toml_path.absolute()
    assert str(toml_path.absolute()) in str(err)
    assert err.fix, "every manifest error says how to fix it"


# ---------------------------------------------------------------------------------------------
# Templates, filled in as `spin new my-app` would
# ---------------------------------------------------------------------------------------------

_TEMPLATE_VALUES = {
    "project-name": "My App",
    "project-description": "A sample app",
    "authors": "Ada <ada@example.com>",
    "http-path": "/...",
    "redirect-from": "/old",
    "redirect-to": "/new",
    "files-path": "assets",
    "redis-address": "redis://localhost:6379",
    "redis-channel": "messages",
}
_FILTERS = {
    "kebab_case": lambda s: re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-"),
    "snake_case": lambda s: re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_"),
    "http_wildcard": lambda s: s if s.endswith("/...") else s.rstrip("/") + "/...",
}
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z-]+)\s*(?:\|\s*([a-z_]+)\s*)?\}\}")


def _fill_template(text: str) -> str:
    def fill(match: re.Match[str]) -> str:
        value = _TEMPLATE_VALUES[match.group(1)]
        return _FILTERS[match.group(2)](value) if match.group(2) else value

    return _PLACEHOLDER.sub(fill, text)


@pytest.mark.parametrize("template", _params(TEMPLATES))
def test_template_loads_once_filled(template: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "spin.toml"
    manifest.write_text(_fill_template(template.read_text()))
    app = load_app(manifest)
    assert app.name == "my-app"
    assert app.description == "A sample app"
    assert set(app.components) <= {"my-app"}
    for trigger in app.http_triggers:
        assert trigger.component == "my-app"


def test_unfilled_template_is_rejected_with_the_bad_id() -> None:
    """A template read before `spin new` fills it names its component `{{project-name | ...}}`,
    which is not a component id (or, with spaces, not even TOML): a clear ManifestError."""
    with_component = [t for t in TEMPLATES if "[component.{{" in t.read_text()]
    if not with_component:
        pytest.skip(MISSING)
    for template in with_component:
        with pytest.raises(ManifestError, match="invalid component id|TOML parse error"):
            load_app(template)
