"""spin.toml reading: each rule Spin applies, the errors a user sees, v1 conversion, routes,
WAGI executors and build specs. Spin's own suite is in test_spin_conformance.py."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pytest

from devenv.errors import ManifestError
from devenv.manifest import guess_app_name, load_app
from devenv.model import Executor, FileMount


def write(tmp_path: Path, text: str, name: str = "spin.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


HEADER = """\
spin_manifest_version = 2

[application]
name = "shop"
"""


def v2(tmp_path: Path, body: str) -> Path:
    return write(tmp_path, HEADER + textwrap.dedent(body))


def error_for(path: Path) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        load_app(path)
    return caught.value


# ---------------------------------------------------------------------------------------------
# A complete version-2 app
# ---------------------------------------------------------------------------------------------


def test_reads_a_full_v2_app(tmp_path: Path) -> None:
    path = v2(
        tmp_path,
        """
        version = "1.2.0"
        description = "Shop front"

        [application.trigger.http]
        base = "/shop"

        [variables]
        api_host = { default = "api.example.com" }
        token = { required = true, secret = true }

        [[trigger.http]]
        route = "/api/..."
        component = "api"

        [[trigger.http]]
        route = "/hello"
        component = "hello"
        executor = { type = "wagi" }

        [[trigger.redis]]
        channel = "orders"
        component = "api"

        [component.api]
        source = "api/target/api.wasm"
        description = "The API"
        files = ["static/**/*", { source = "assets", destination = "/assets" }]
        exclude_files = ["static/secret.txt"]
        environment = { LOG = "debug" }
        allowed_outbound_hosts = ["https://{{ api_host }}", "redis://*:6379"]
        variables = { endpoint = "https://{{ api_host }}/v1" }

        [component.api.build]
        command = ["cargo build --release", "wasm-opt -O x.wasm"]
        workdir = "api"
        watch = ["src/**/*.rs", "Cargo.toml"]

        [component.hello]
        source = { url = "https://example.com/hello.wasm", digest = "sha256:0123" }
        """,
    )
    app = load_app(path)
    assert (app.name, app.version, app.description) == ("shop", "1.2.0", "Shop front")
    assert app.manifest_path == path and app.root == tmp_path and app.manifest_version == 2
    assert app.http_base == "/shop"
    assert app.other_triggers == ("redis",)
    assert dict(app.variables["api_host"]) == {"default": "api.example.com"}

    api = app.components["api"]
    assert api.source == tmp_path / "api/target/api.wasm"
    assert api.description == "The API"
    assert api.files == (FileMount("static/**/*"), FileMount("assets", "/assets"))
    assert api.exclude_files == ("static/secret.txt",)
    assert dict(api.environment) == {"LOG": "debug"}
    assert api.allowed_outbound_hosts == ("https://{{ api_host }}", "redis://*:6379")
    assert dict(api.variables) == {"endpoint": "https://{{ api_host }}/v1"}
    assert api.build is not None
    assert api.build.command == ("cargo build --release", "wasm-opt -O x.wasm")
    assert api.build.workdir == tmp_path / "api"
    assert api.build.watch == ("src/**/*.rs", "Cargo.toml")

    hello = app.components["hello"]
    assert hello.source is None
    assert (hello.source_url, hello.source_digest) == ("https://example.com/hello.wasm", "sha256:0123")

    first, second = app.http_triggers
    assert (first.route.path, first.component, first.executor) == ("/api/...", "api", Executor.HTTP)
    assert first.route.wildcard and first.route.prefix == "/api"
    assert (second.route.path, second.executor) == ("/hello", Executor.WAGI)


def test_build_command_string_and_default_workdir(tmp_path: Path) -> None:
    path = v2(
        tmp_path,
        """
        [[trigger.http]]
        route = "/..."
        component = "web"
        [component.web]
        source = "web.wasm"
        build.command = "make"
        """,
    )
    build = load_app(path).components["web"].build
    assert build is not None
    assert build.command == ("make",) and build.workdir == tmp_path and build.watch == ()


def test_wagi_executor_defaults_and_overrides(tmp_path: Path) -> None:
    path = v2(
        tmp_path,
        """
        [[trigger.http]]
        route = "/a"
        component = "c"
        executor = { type = "wagi" }
        [[trigger.http]]
        route = "/b"
        component = "c"
        executor = { type = "wagi", argv = "${SCRIPT_NAME} -v", entrypoint = "main" }
        [[trigger.http]]
        route = "/c"
        component = "c"
        executor = { type = "http" }
        [component.c]
        source = "c.wasm"
        """,
    )
    a, b, c = load_app(path).http_triggers
    assert (a.executor, a.wagi_argv, a.wagi_entrypoint) == (Executor.WAGI, "${SCRIPT_NAME} ${ARGS}", "_start")
    assert (b.wagi_argv, b.wagi_entrypoint) == ("${SCRIPT_NAME} -v", "main")
    assert c.executor is Executor.HTTP


def test_inline_component_gets_spins_generated_id(tmp_path: Path) -> None:
    path = v2(
        tmp_path,
        """
        [[trigger.http]]
        route = "/one"
        component = { source = "one.wasm" }
        [[trigger.http]]
        id = "admin"
        route = "/admin"
        component = { source = "admin.wasm" }
        """,
    )
    app = load_app(path)
    assert set(app.components) == {"http-trigger1-component", "admin-component"}
    assert [t.component for t in app.http_triggers] == ["http-trigger1-component", "admin-component"]
    assert app.components["admin-component"].source == tmp_path / "admin.wasm"


def test_static_response_and_private_routes_are_not_served_but_load(tmp_path: Path) -> None:
    path = v2(
        tmp_path,
        """
        [[trigger.http]]
        route = "/missing/..."
        static_response = { status_code = 404 }
        [[trigger.http]]
        route = { private = true }
        component = "inner"
        [component.inner]
        source = "inner.wasm"
        """,
    )
    app = load_app(path)
    assert app.http_triggers == ()
    assert any("static_response" in w for w in app.warnings)


def test_deprecated_allowed_http_hosts_are_converted_with_a_warning(tmp_path: Path) -> None:
    path = v2(
        tmp_path,
        """
        [[trigger.http]]
        route = "/"
        component = "c"
        [component.c]
        source = "c.wasm"
        allowed_http_hosts = ["example.com:8080", "self"]
        """,
    )
    app = load_app(path)
    assert app.components["c"].allowed_outbound_hosts == (
        "http://example.com:8080",
        "https://example.com:8080",
        "http://self",
    )
    assert any("allowed_http_hosts is deprecated" in w for w in app.warnings)


# ---------------------------------------------------------------------------------------------
# Version 1
# ---------------------------------------------------------------------------------------------


def test_v1_manifest_converts_to_the_same_model(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        spin_manifest_version = "1"
        name = "legacy"
        version = "0.3.0"
        trigger = { type = "http", base = "/base" }

        [[component]]
        id = "my_Comp"
        source = "legacy.wasm"
        allowed_http_hosts = ["api.example.com"]
        config = { greeting = "hi" }
        [component.trigger]
        route = "/legacy/..."
        executor = { type = "wagi", entrypoint = "run" }
        [component.build]
        command = "make"
        workdir = "src"
        """,
    )
    app = load_app(path)
    assert app.manifest_version == 1 and app.name == "legacy" and app.http_base == "/base"
    component = app.components["my-comp"]  # Spin rewrites snake/mixed case ids to kebab-case
    assert component.source == tmp_path / "legacy.wasm"
    assert dict(component.variables) == {"greeting": "hi"}
    # Without allowed_outbound_hosts, v1 components keep their old database access.
    assert component.allowed_outbound_hosts == (
        "redis://*:*",
        "mysql://*:*",
        "postgres://*:*",
        "http://api.example.com",
        "https://api.example.com",
    )
    assert component.build is not None and component.build.workdir == tmp_path / "src"
    (trigger,) = app.http_triggers
    assert (trigger.route.path, trigger.component) == ("/legacy/...", "my-comp")
    assert (trigger.executor, trigger.wagi_entrypoint) == (Executor.WAGI, "run")


def test_v1_old_spin_version_key_and_errors_name_v1_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        spin_version = "1"
        name = "legacy"
        trigger = { type = "http" }
        [[component]]
        id = "a"
        source = "a.wasm"
        [component.trigger]
        route = 5
        """,
    )
    err = error_for(path)
    assert err.key == "component[0].trigger.route"
    assert "expected a string, found an integer (5)" in str(err)


def test_v1_duplicate_component_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        spin_manifest_version = "1"
        name = "dup"
        trigger = { type = "http" }
        [[component]]
        id = "same_id"
        source = "a.wasm"
        trigger = { route = "/a" }
        [[component]]
        id = "same-id"
        source = "b.wasm"
        trigger = { route = "/b" }
        """,
    )
    err = error_for(path)
    assert "cannot have duplicate component IDs: same-id" in str(err)
    assert err.key == "component[1].id"


# ---------------------------------------------------------------------------------------------
# Errors: file, key, what was expected, fix
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "key", "phrase"),
    [
        (
            "[component.bad_id]\nsource = 'x.wasm'\n",
            "component.bad_id",
            "words must be separated with '-', not '_'",
        ),
        ("[component.Bad]\nsource = 'x.wasm'\n", "component.Bad", None),
        ("[component.a-Bc]\nsource = 'x.wasm'\n", "component.a-Bc", "must be all lowercase or all UPPERCASE"),
        ("[component.a--b]\nsource = 'x.wasm'\n", "component.a--b", "'-'-separated words must not be empty"),
        (
            "[[trigger.http]]\nroute = '/'\ncomponent = '9lives'\n",
            "trigger.http[0].component",
            "must start with an ASCII letter; got '9'",
        ),
        ("[variables]\nBadName = { default = 'x' }\n", "variables.BadName", None),
        (
            "[variables]\nv = { default = 'x', required = true }\n",
            "variables.v",
            "must be `required` OR have a `default`",
        ),
        ("[variables]\nv = { defualt = 'x' }\n", "variables.v.defualt", "did you mean `default`"),
        ("[component.c]\ndescription = 'no source'\n", "component.c", "missing field `source`"),
        (
            "[component.c]\nsource = 'c.wasm'\nbuidl = { command = 'make' }\n",
            "component.c.buidl",
            "did you mean `build`",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\n[component.c.build]\nworkdir = 'x'\n",
            "component.c.build",
            "missing field `command`",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\nbuild.command = 3\n",
            "component.c.build.command",
            "found an integer (3)",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\nbuild.command = ['ok', 1]\n",
            "component.c.build.command[1]",
            "expected a string",
        ),
        (
            "[component.c]\nsource = { url = 'https://x/c.wasm', digest = 'md5:1' }\n",
            "component.c.source.digest",
            "must start with 'sha256:'",
        ),
        (
            "[component.c]\nsource = { url = 'https://x/c.wasm' }\n",
            "component.c.source",
            "missing field `digest`",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\nenvironment = { A = 1 }\n",
            "component.c.environment.A",
            "expected a string",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\nfiles = [{ source = 'a' }]\n",
            "component.c.files[0]",
            "missing field `destination`",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\nfiles = ['assets/..']\n",
            "component.c.files[0]",
            "directory path",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\nallowed_outbound_hosts = ['example.com']\n",
            "component.c.allowed_outbound_hosts[0]",
            "does not contain a scheme",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\nallowed_outbound_hosts = ['https://exa mple.com']\n",
            "component.c.allowed_outbound_hosts[0]",
            "invalid international domain name",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\nallowed_outbound_hosts = ['foo://example.com']\n",
            "component.c.allowed_outbound_hosts[0]",
            "does not have a known default port",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\nallowed_outbound_hosts = ['https://ex*ample.com']\n",
            "component.c.allowed_outbound_hosts[0]",
            "wildcards are allowed only as subdomains",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\nallowed_outbound_hosts = ['https://example.com:http']\n",
            "component.c.allowed_outbound_hosts[0]",
            "is not a number",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\nallowed_outbound_hosts = ['insecure:allow-all']\n",
            "component.c.allowed_outbound_hosts[0]",
            "use '*://*:*' instead",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\nallowed_outbound_hosts = ['https://{{ host']\n",
            "component.c.allowed_outbound_hosts[0]",
            "unmatched '{{' in template",
        ),
        (
            "[component.c]\nsource = 'c.wasm'\nallowed_http_hosts = ['ftp://x.com']\n",
            "component.c.allowed_http_hosts",
            "isn't a valid host or host:port string",
        ),
        (
            "[[trigger.http]]\nroute = '/'\ncomponent = 'nope'\n",
            "trigger.http[0].component",
            "which is not defined",
        ),
        ("[[trigger.http]]\nroute = '/'\n", "trigger.http[0]", "has neither"),
        (
            "[[trigger.http]]\nroute = '/'\ncomponent = { source = 'a.wasm' }\nexecutor = { type = 'cgi' }\n",
            "trigger.http[0].executor.type",
            "expected `http` or `wagi`",
        ),
        (
            "[[trigger.http]]\nroute = '/'\ncomponent = { source = 'a.wasm' }\nexecutor = { type = 'wagi', args = 'x' }\n",
            "trigger.http[0].executor.args",
            "did you mean `argv`",
        ),
        (
            "[[trigger.http]]\nrout = '/'\ncomponent = { source = 'a.wasm' }\n",
            "trigger.http[0].rout",
            "did you mean `route`",
        ),
        ("[trigger.http]\nroute = '/'\n", "trigger.http", "expected an array of tables"),
        ("[application.trigger.http]\nbase = 1\n", "application.trigger.http.base", "expected a string"),
        ("[aplication]\nname = 'x'\n", "aplication", "did you mean `application`"),
    ],
)
def test_error_names_key_and_reason(tmp_path: Path, body: str, key: str, phrase: str | None) -> None:
    err = error_for(v2(tmp_path, body))
    assert err.key == key
    assert err.path == tmp_path / "spin.toml"
    assert str(tmp_path / "spin.toml") in str(err) and f"[{key}]" in str(err)
    if phrase:
        assert phrase in str(err)
    assert err.fix


def test_templated_outbound_host_is_checked_with_the_variable_default(tmp_path: Path) -> None:
    body = """
        [variables]
        host = {{ default = "{default}" }}
        other = {{ required = true }}
        [component.c]
        source = "c.wasm"
        allowed_outbound_hosts = ["https://{{{{ host }}}}", "https://{{{{ other }}}}"]
        """
    assert load_app(v2(tmp_path, body.format(default="api.example.com"))).components["c"]
    err = error_for(v2(tmp_path, body.format(default="bad host")))
    assert 'results in invalid config "https://bad host"' in str(err)


@pytest.mark.parametrize(
    ("text", "phrase", "key"),
    [
        ("", "missing field `spin_manifest_version`", ""),
        ("spin_manifest_version = 3\n", "invalid manifest version: 3", "spin_manifest_version"),
        ("spin_manifest_version = 2.0\n", "invalid manifest version: 2.0", "spin_manifest_version"),
        ('spin_manifest_version = "2"\n', 'invalid manifest version: "2"', "spin_manifest_version"),
        ("spin_manifest_version = 2\n", "missing field `application`", ""),
        ("spin_manifest_version = 2\n[application]\n", "missing field `name`", "application"),
        (
            "spin_manifest_version = 2\n[application]\nname = 'x'\nextra = 1\n",
            "unknown field `extra`",
            "application.extra",
        ),
        ('spin_manifest_version = 2\nspin_version = "1"\n', "duplicate field", "spin_version"),
    ],
)
def test_version_and_top_level_errors(tmp_path: Path, text: str, phrase: str, key: str) -> None:
    err = error_for(write(tmp_path, text))
    assert phrase in str(err) and err.key == key


def test_toml_syntax_error_reports_line_and_column(tmp_path: Path) -> None:
    err = error_for(write(tmp_path, 'spin_manifest_version = 2\n[application]\nname = "x\n'))
    assert "TOML parse error at line 3, column" in str(err)
    assert err.__cause__ is None and err.__context__ is None


def test_toml_syntax_error_at_the_end_of_the_file_says_so(tmp_path: Path) -> None:
    # tomllib reports some errors "(at end of document)" rather than at a line and column.
    err = error_for(write(tmp_path, "spin_manifest_version = 2\nx = [\n"))
    assert "TOML parse error at the end of the file: Invalid value" in str(err)
    assert "unknown position" not in str(err)


def test_missing_file_non_utf8_and_directory(tmp_path: Path) -> None:
    assert "file not found" in str(error_for(tmp_path / "nope.toml"))
    bad = tmp_path / "bad" / "spin.toml"
    bad.parent.mkdir()
    bad.write_bytes(b"spin_manifest_version = 2\nname = '\xff'\n")
    assert "not valid UTF-8 (line 2)" in str(error_for(bad))
    # A directory reads as the spin.toml inside it, as `spin up -f DIR` does.
    good = v2(tmp_path, "")
    assert load_app(tmp_path).manifest_path == good


# ---------------------------------------------------------------------------------------------
# guess_app_name
# ---------------------------------------------------------------------------------------------


def test_guess_app_name(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    assert guess_app_name(write(tmp_path / "broken", "not = [toml")) == "broken"
    assert guess_app_name(v2(tmp_path, "")) == "shop"
    (tmp_path / "old").mkdir()
    assert guess_app_name(write(tmp_path / "old", 'spin_version = "1"\nname = "legacy"\n')) == "legacy"


# ---------------------------------------------------------------------------------------------
# Never anything but ManifestError, whatever the input
# ---------------------------------------------------------------------------------------------

_SEED_MANIFEST = HEADER + textwrap.dedent(
    """
    [variables]
    host = { default = "example.com" }
    [[trigger.http]]
    route = "/..."
    component = "api"
    executor = { type = "wagi", argv = "x" }
    [[trigger.http]]
    route = "/inline"
    component = { source = "i.wasm", files = ["a/*"] }
    [component.api]
    source = "api.wasm"
    files = ["static/*", { source = "a", destination = "/a" }]
    allowed_outbound_hosts = ["https://{{ host }}:443"]
    allowed_http_hosts = ["example.com"]
    environment = { A = "b" }
    [component.api.build]
    command = ["make", "strip"]
    workdir = "w"
    watch = ["*.c"]
    """
)
_REPLACEMENTS = ["1", "true", "[]", "{}", '""', '"x"', "[1]", "{ a = 1 }", "-1", "1.5", '"sha256:"', '"/..."']


def test_mutated_manifests_only_ever_raise_manifest_error(tmp_path: Path) -> None:
    rng = random.Random(20261127)
    lines = _SEED_MANIFEST.splitlines()
    path = tmp_path / "spin.toml"
    outcomes = {"loaded": 0, "rejected": 0}
    for _ in range(600):
        mutated = list(lines)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(mutated))
            line = mutated[i]
            choice = rng.random()
            if choice < 0.4 and "=" in line:
                mutated[i] = line.split("=", 1)[0] + "= " + rng.choice(_REPLACEMENTS)
            elif choice < 0.6:
                del mutated[i]
            elif choice < 0.8:
                mutated.insert(i, rng.choice(lines))
            else:
                cut = rng.randrange(len(line) + 1)
                mutated[i] = line[:cut] + rng.choice(["_", "-", "*", "{{", "}", "[", "é", ""]) + line[cut:]
        path.write_text("\n".join(mutated))
        try:
            load_app(path)
            outcomes["loaded"] += 1
        except ManifestError as err:
            assert err.path == path and str(err)
            outcomes["rejected"] += 1
    # The mutations must exercise both paths, or the test proves nothing.
    assert outcomes["loaded"] > 20 and outcomes["rejected"] > 100


@pytest.mark.parametrize(
    ("text", "key", "phrase"),
    [
        (
            'spin_manifest_version = 2\n[application]\nname = "v"\n[variables]\nApiHost = { default = "x" }\n',
            "variables.ApiHost",
            "invalid variable name `ApiHost`",
        ),
        (
            'spin_manifest_version = 2\n[application]\nname = "v"\n'
            '[component.c]\nsource = "c.wasm"\nvariables = { "api-host" = "x" }\n',
            "component.c.variables.api-host",
            "invalid variable name `api-host`",
        ),
        (
            'spin_manifest_version = "1"\nname = "v"\ntrigger = { type = "http" }\n'
            '[[component]]\nid = "c"\nsource = "c.wasm"\ntrigger = { route = "/" }\nconfig = { Bad = "x" }\n',
            "component[0].config.Bad",
            "invalid ID `Bad`",
        ),
    ],
)
def test_variable_names_must_be_lower_snake_case_wherever_they_are_declared(
    tmp_path: Path, text: str, key: str, phrase: str
) -> None:
    err = error_for(write(tmp_path, text))
    assert err.key == key and phrase in str(err) and "lower_snake_case" in str(err)
