"""The manifests wasmdev applies, as pure data: names, labels, routing and the shim's pod shape."""

from __future__ import annotations

import pytest

from devenv.targets.cluster.resources import (
    Workload,
    app_url,
    deployment,
    ingress,
    managed_selector,
    object_name,
    runtime_class,
    service,
    workload_manifests,
)


@pytest.mark.parametrize(
    ("app", "name"),
    [
        ("hello", "hello"),
        ("Todo_API", "todo-api"),
        ("my..app", "my-app"),
        ("9lives", "app-9lives"),
        ("x" * 80, "x" * 63),
    ],
)
def test_object_names_are_dns_labels(app, name):
    assert object_name(app) == name


def test_an_app_name_with_nothing_usable_is_refused():
    with pytest.raises(ValueError, match="cannot make a Kubernetes object name"):
        object_name("___")


def test_selectors_find_all_or_one_app():
    assert managed_selector() == "app.kubernetes.io/managed-by=wasmdev"
    assert managed_selector("Todo_API") == "app.kubernetes.io/managed-by=wasmdev,wasmdev.dev/app=todo-api"


def test_deployment_without_limits_and_with_env():
    w = Workload(app="hello", image="r:5000/hello:b-1", build="abc", cpu_limit=None, env={"B": "2", "A": "1"})
    container = deployment(w, "dev")["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}}
    assert container["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/.well-known/spin/health", "port": 80}
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_service_and_ingress_select_the_app_pods_and_route_by_host():
    w = Workload(app="hello", image="i", build="b", ingress_domain="dev.example.com", ingress_class=None)
    assert service(w, "dev")["spec"]["selector"] == deployment(w, "dev")["spec"]["selector"]["matchLabels"]
    ing = ingress(w, "dev")
    assert ing["spec"]["rules"][0]["host"] == "hello.dev.example.com"
    assert "ingressClassName" not in ing["spec"]
    assert ing["metadata"]["annotations"]["ingress.kubernetes.io/ssl-redirect"] == "false"
    assert [m["kind"] for m in workload_manifests(w, "dev")] == ["Service", "Ingress", "Deployment"]
    assert all(m["metadata"]["namespace"] == "dev" for m in workload_manifests(w, "dev"))


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://localhost:8081", "http://hello.localhost:8081/"),
        ("http://localhost:8081/", "http://hello.localhost:8081/"),
        ("http://localhost", "http://hello.localhost/"),
    ],
)
def test_urls_use_the_host_rule_on_the_shared_port(base, url):
    assert app_url(Workload(app="hello", image="i", build="b"), base) == url


def test_runtime_class_manifest():
    rc = runtime_class()
    assert (rc["metadata"]["name"], rc["handler"]) == ("wasmtime-spin-v2", "spin")
    assert rc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "wasmdev"
