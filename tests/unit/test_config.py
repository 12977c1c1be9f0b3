"""wasmdev.toml settings, typo and type errors, manifest discovery, and per-app local ports."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devenv.config import (
    AppSettings,
    ClusterSettings,
    LocalSettings,
    Settings,
    app_ports,
    default_kubeconfig,
    discover_manifests,
    load_workspace,
)
from devenv.errors import ManifestError, WasmdevError


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def config(root: Path, text: str) -> Path:
    path = root / "wasmdev.toml"
    path.write_text(textwrap.dedent(text))
    return path


def config_error(root: Path, text: str) -> ManifestError:
    config(root, text)
    with pytest.raises(ManifestError) as caught:
        load_workspace(root)
    return caught.value


# ---------------------------------------------------------------------------------------------
# Defaults and a full file
# ---------------------------------------------------------------------------------------------


def test_defaults_without_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "conf"))
    workspace = load_workspace(tmp_path)
    settings = workspace.settings
    assert workspace.root == tmp_path.resolve() and settings.config_path is None
    assert (
        settings.target == "local" and settings.watch_debounce_ms == 50 and settings.build_timeout_s == 600.0
    )
    assert settings.local == LocalSettings(cache_dir=tmp_path / "cache" / "wasmdev")
    assert settings.cluster.kubeconfig == tmp_path / "conf" / "wasmdev" / "kubeconfig-wasmdev.yaml"
    assert settings.kube.registry is None and settings.kube.namespace == "default"
    assert settings.app("anything") == AppSettings()


def test_full_config_is_read(tmp_path: Path) -> None:
    manifest = touch(tmp_path / "apps" / "a" / "spin.toml")
    config(
        tmp_path,
        """
        target = "kube"
        manifests = ["apps/a/spin.toml"]
        watch_debounce_ms = 100
        build_timeout_s = 120

        [local]
        host = "0.0.0.0"
        base_port = 4000
        request_timeout_s = 5
        memory_limit_mb = 64
        probe_interval_s = 2.5
        cache_dir = "cache"

        [cluster]
        name = "dev"
        agents = 2
        api_port = 6550

        [kube]
        context = "prod"
        kubeconfig = "~/kc.yaml"
        registry = "registry.example.com:5000/team/apps"
        insecure_registry = true

        [apps.a]
        port = 4100
        replicas = 3
        memory_limit = "256Mi"
        cpu_limit = "1"
        enabled = false
        """,
    )
    workspace = load_workspace(tmp_path)
    s = workspace.settings
    assert s.config_path == tmp_path.resolve() / "wasmdev.toml"
    assert (s.target, s.watch_debounce_ms, s.build_timeout_s) == ("kube", 100, 120.0)
    assert s.local == LocalSettings(
        host="0.0.0.0",
        base_port=4000,
        request_timeout_s=5.0,
        memory_limit_mb=64,
        probe_interval_s=2.5,
        cache_dir=tmp_path.resolve() / "cache",
    )
    assert s.cluster == ClusterSettings(name="dev", agents=2, api_port=6550)
    assert s.cluster.kubeconfig == default_kubeconfig("dev")
    assert s.kube.context == "prod" and s.kube.kubeconfig == Path.home() / "kc.yaml"
    assert s.kube.registry == "registry.example.com:5000/team/apps" and s.kube.insecure_registry
    assert s.app("a") == AppSettings(
        port=4100, replicas=3, memory_limit="256Mi", cpu_limit="1", enabled=False
    )
    assert s.manifests == (manifest.resolve(),) == workspace.manifests


def test_explicit_config_path_and_globs(tmp_path: Path) -> None:
    a = touch(tmp_path / "svc" / "a" / "spin.toml")
    b = touch(tmp_path / "svc" / "b" / "spin.toml")
    touch(tmp_path / "other" / "spin.toml")  # not listed: not an app
    elsewhere = tmp_path / "conf"
    elsewhere.mkdir()
    path = elsewhere / "dev.toml"
    path.write_text('apps = ["../svc/*"]\n')
    workspace = load_workspace(tmp_path, path)
    assert workspace.manifests == (a.resolve(), b.resolve())


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "phrase"),
    [
        ('targt = "local"\n', "targt", "did you mean `target`"),
        ('target = "k8s"\n', "target", '"k8s" is not one of "local", "k3d", "kube"'),
        ('target = "kub"\n', "target", 'did you mean "kube"'),
        ("watch_debounce_ms = '50'\n", "watch_debounce_ms", "expected an integer, found a string ('50')"),
        ("build_timeout_s = 0\n", "build_timeout_s", "out of range"),
        ("build_timeout_s = nan\n", "build_timeout_s", "out of range"),
        ("[local]\nbase_prot = 4000\n", "local.base_prot", "did you mean `base_port`"),
        ("[local]\nbase_port = 70000\n", "local.base_port", "70000 is out of range"),
        ("[local]\nbase_port = true\n", "local.base_port", "expected an integer, found a boolean (true)"),
        ("local = 3\n", "local", "expected a table"),
        ("[cluster]\nname = 'My Cluster'\n", "cluster.name", "is not a lowercase DNS label"),
        ("[kube]\nregistry = 'http://localhost:5000/x'\n", "kube.registry", "HOST[:PORT]/REPO"),
        ("[kube]\nregistry = 'localhost:5000'\n", "kube.registry", "HOST[:PORT]/REPO"),
        ("[kube]\ninsecure_registry = 'yes'\n", "kube.insecure_registry", "expected true or false"),
        ("[apps.shop]\nreplica = 2\n", "apps.shop.replica", "did you mean `replicas`"),
        ("[apps.shop]\nmemory_limit = '128MB'\n", "apps.shop.memory_limit", "is not a memory quantity"),
        ("[apps.shop]\ncpu_request = 'lots'\n", "apps.shop.cpu_request", "is not a CPU quantity"),
        ("manifests = ['nope/spin.toml']\n", "manifests[0]", 'no spin.toml at "nope/spin.toml"'),
        ("manifests = ['nope/*']\n", "manifests[0]", "matches no spin.toml"),
        ("manifests = 'apps'\n", "manifests", "expected an array of strings"),
        ("target = \n", "", "TOML parse error at line 1"),
    ],
)
def test_config_errors_name_file_key_and_fix(tmp_path: Path, text: str, key: str, phrase: str) -> None:
    err = config_error(tmp_path, text)
    assert err.key == key
    assert err.path == tmp_path.resolve() / "wasmdev.toml"
    assert "wasmdev.toml" in str(err) and phrase in str(err)
    assert err.fix


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="file not found"):
        load_workspace(tmp_path, tmp_path / "missing.toml")


# ---------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------


def test_discovery_finds_apps_and_skips_outputs_deps_and_venvs(tmp_path: Path) -> None:
    wanted = [
        touch(tmp_path / "spin.toml"),
        touch(tmp_path / "apps" / "a" / "spin.toml"),
        touch(tmp_path / "x" / "y" / "z" / "spin.toml"),
    ]
    for skipped in [
        ".git",
        "node_modules",
        "target",
        ".venv",
        "venv",
        "__pycache__",
        "dist",
        "build",
        ".spin",
        ".wasmdev",
        ".hidden",
    ]:
        touch(tmp_path / skipped / "spin.toml")
        touch(tmp_path / "apps" / "a" / skipped / "deep" / "spin.toml")
    touch(tmp_path / "myenv" / "pyvenv.cfg")
    touch(tmp_path / "myenv" / "lib" / "spin.toml")
    touch(tmp_path / "apps" / "a" / "spin.toml.bak")
    found = discover_manifests(tmp_path)
    assert found == sorted(p.resolve() for p in wanted)
    assert load_workspace(tmp_path).manifests == tuple(found)


def test_listed_manifests_replace_discovery(tmp_path: Path) -> None:
    listed = touch(tmp_path / "a" / "spin.toml")
    touch(tmp_path / "b" / "spin.toml")
    config(tmp_path, 'manifests = ["a"]\n')  # a folder holding a spin.toml counts
    assert load_workspace(tmp_path).manifests == (listed.resolve(),)


def test_config_without_manifest_list_still_discovers(tmp_path: Path) -> None:
    found = touch(tmp_path / "b" / "spin.toml")
    config(tmp_path, "[apps.b]\nport = 4000\n")
    workspace = load_workspace(tmp_path)
    assert workspace.manifests == (found.resolve(),) and workspace.settings.app("b").port == 4000


# ---------------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------------


def test_ports_follow_order_and_respect_explicit_ones(tmp_path: Path) -> None:
    settings = Settings(
        root=tmp_path,
        local=LocalSettings(base_port=3000),
        apps={"b": AppSettings(port=3001), "d": AppSettings(port=9000)},
    )
    ports = app_ports(settings, ["a", "b", "c", "d", "e"])
    assert ports == {"a": 3000, "b": 3001, "c": 3002, "d": 9000, "e": 3004}
    # a port taken explicitly is skipped by the implicit ones
    ports = app_ports(settings, ["x", "y", "b"])
    assert ports == {"b": 3001, "x": 3000, "y": 3002}
    assert len(set(ports.values())) == len(ports)


def test_explicit_port_clash_names_both_apps(tmp_path: Path) -> None:
    settings = Settings(root=tmp_path, apps={"one": AppSettings(port=4000), "two": AppSettings(port=4000)})
    with pytest.raises(ManifestError) as caught:
        app_ports(settings, ["one", "two"])
    assert "`one` and `two`" in str(caught.value) and caught.value.key == "apps.two.port"


# ---------------------------------------------------------------------------------------------
# CLI overrides
# ---------------------------------------------------------------------------------------------


def test_with_overrides(tmp_path: Path) -> None:
    settings = Settings(root=tmp_path)
    changed = settings.with_overrides(
        target="k3d",
        local_base_port=5000,
        kube_context="ctx",
        kube_registry="localhost:5001/apps",
        cluster_image="example/k3d:1",
        cluster_name="other",
        watch_debounce_ms=None,  # a flag not given changes nothing
    )
    assert changed.target == "k3d" and changed.local.base_port == 5000
    assert changed.kube.context == "ctx" and changed.kube.registry == "localhost:5001/apps"
    assert changed.cluster.image == "example/k3d:1" and changed.cluster.kubeconfig == default_kubeconfig(
        "other"
    )
    assert changed.watch_debounce_ms == 50
    assert settings.target == "local"  # the original is untouched (frozen)


def test_bad_override_names_the_flag(tmp_path: Path) -> None:
    settings = Settings(root=tmp_path)
    with pytest.raises(WasmdevError) as caught:
        settings.with_overrides(local_base_port=0)
    assert caught.value.where == "--local-base-port" and "out of range" in str(caught.value)
    with pytest.raises(TypeError, match="did you mean 'local_base_port'"):
        settings.with_overrides(local_base_prot=3000)


def test_empty_registry_name_selects_image_import(tmp_path: Path) -> None:
    config(tmp_path, '[cluster]\nregistry_name = ""\n')
    assert load_workspace(tmp_path).settings.cluster.registry_name == ""
    error = config_error(tmp_path, '[cluster]\nregistry_name = "Bad_Name"\n')
    assert "cluster.registry_name" in str(error)


def test_apps_sharing_a_declared_name_are_named_after_their_folders(tmp_path: Path) -> None:
    from devenv.app_names import app_names

    root = tmp_path
    declared = {
        root / "examples" / "hello" / "spin.toml": "test",
        root / "examples" / "KV Store" / "spin.toml": "test",
        root / "other" / "hello" / "spin.toml": "test",  # the same folder name as the first
        root / "api" / "spin.toml": "api",
        root / "clash" / "spin.toml": "hello",  # declares what a folder name would be
    }
    names = app_names(declared, root)
    assert names[root / "api" / "spin.toml"] == "api"
    assert names[root / "clash" / "spin.toml"] == "hello"
    shared = [names[m] for m in list(declared)[:3]]
    assert shared == ["examples-hello", "kv-store", "other-hello"]
    assert len(set(names.values())) == len(declared)
