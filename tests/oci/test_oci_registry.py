"""Pushing to the real distribution registry and reading the result back over its HTTP API."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.errors import DeployError
from devenv.model import BuiltApp
from devenv.oci import RegistryClient, RegistryError, normalize_repository, package_app
from devenv.oci.layout import MEDIA_INDEX
from tests.oci.conftest import WASM_MAGIC, Registry, free_port, unique_repo, write_app


def fetch(url: str, accept: str = "*/*") -> tuple[bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read(), dict(resp.headers)


@pytest.mark.registry
def test_push_then_read_everything_back(registry: Registry, shop: BuiltApp, tmp_path: Path) -> None:
    image = package_app(shop, tmp_path / "store")
    repo = unique_repo("shop")
    with RegistryClient(registry.url) as client:
        client.ping()
        result = client.push(image, repo, image.tag)

    assert result.digest == image.digest
    assert (result.repository, result.tag) == (repo, image.tag)
    assert result.pushed_blobs == len(image.layers) + 2  # the layers and one config per platform
    assert result.skipped_blobs == 0
    assert result.pushed_manifests == 2
    assert result.bytes_sent == image.size

    body, headers = fetch(f"{registry.url}/v2/{repo}/manifests/{image.tag}", MEDIA_INDEX)
    assert headers["Docker-Content-Digest"] == image.digest
    assert headers["Content-Type"] == MEDIA_INDEX
    assert body == image.read_blob(image.digest)  # stored verbatim: the digest holds
    index = json.loads(body)
    for entry in index["manifests"]:
        manifest_body, _ = fetch(f"{registry.url}/v2/{repo}/manifests/{entry['digest']}", entry["mediaType"])
        assert "sha256:" + hashlib.sha256(manifest_body).hexdigest() == entry["digest"]
        manifest = json.loads(manifest_body)
        for blob in [manifest["config"], *manifest["layers"]]:
            data, _ = fetch(f"{registry.url}/v2/{repo}/blobs/{blob['digest']}")
            assert "sha256:" + hashlib.sha256(data).hexdigest() == blob["digest"]
            assert len(data) == blob["size"]
        config, _ = fetch(f"{registry.url}/v2/{repo}/blobs/{manifest['config']['digest']}")
        assert json.loads(config)["architecture"] == entry["platform"]["architecture"]


@pytest.mark.registry
def test_unchanged_build_sends_no_blobs_and_an_edit_sends_only_its_layer(
    registry: Registry, shop: BuiltApp, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    repo = unique_repo("shop")
    client = RegistryClient(registry.url)
    first = package_app(shop, store)
    client.push(first, repo, first.tag)

    again = client.push(package_app(shop, store), repo, first.tag)
    assert again.pushed_blobs == 0 and again.pushed_manifests == 0
    assert again.skipped_blobs == len(first.layers) + 2
    assert again.bytes_sent == first.index.size  # only the tag's index travels

    edited = package_app(write_app(shop.spec.root, api=WASM_MAGIC + b"api v2" * 1000), store)
    result = client.push(edited, repo, edited.tag)
    changed_layer = edited.layers[0]
    assert changed_layer.title == "component api"
    # The api layer plus the two configs (their diff_ids changed); every other layer is skipped.
    assert result.pushed_blobs == 3
    assert result.skipped_blobs == len(edited.layers) - 1
    small_docs = (
        sum(c.size for c in edited.configs) + sum(m.size for m in edited.manifests) + edited.index.size
    )
    assert result.bytes_sent == changed_layer.descriptor.size + small_docs
    # Both tags resolve, each to its own build.
    assert client.get_manifest(repo, first.tag)[2] == first.digest
    assert client.get_manifest(repo, edited.tag)[2] == edited.digest
    client.close()


@pytest.mark.registry
def test_chunked_upload_of_big_blobs_round_trips(registry: Registry, tmp_path: Path) -> None:
    big = WASM_MAGIC + hashlib.sha256(b"seed").digest() * 40_000  # ~1.3 MB
    built = write_app(tmp_path / "app", web=big)
    image = package_app(built, tmp_path / "store")
    repo = unique_repo("chunked")
    client = RegistryClient(registry.url, chunk_threshold=64 << 10, chunk_size=100_000)
    result = client.push(image, repo, image.tag)
    assert result.pushed_blobs == len(image.layers) + 2
    web_layer = next(layer for layer in image.layers if layer.title == "component web")
    assert web_layer.descriptor.size > client.chunk_threshold  # it really went in chunks
    data, _ = fetch(f"{registry.url}/v2/{repo}/blobs/{web_layer.descriptor.digest}")
    assert data == image.read_blob(web_layer.descriptor.digest)


def test_registry_down_says_where_and_how_to_fix(shop: BuiltApp, tmp_path: Path) -> None:
    image = package_app(shop, tmp_path / "store")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = RegistryClient(url, timeout=5)
    with pytest.raises(RegistryError) as info:
        client.push(image, "shop", image.tag)
    err = info.value
    assert isinstance(err, DeployError)  # the deployer keeps the previous version serving
    assert url in str(err) and "shop" in err.where
    assert "cannot reach the registry" in err.what
    assert "k3d registry list" in err.fix
    with pytest.raises(RegistryError):
        client.ping()


class WebServer(http.server.ThreadingHTTPServer):
    """A plain web server on /v2/: 404 (not a registry), or 401 with a token challenge."""

    mode = ""


class _Handler(http.server.BaseHTTPRequestHandler):
    server: WebServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        status = 401 if self.server.mode == "auth" else 404
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="https://auth.example/token"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web_server() -> Iterator[WebServer]:
    server = WebServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_ping_tells_a_web_server_from_a_registry_and_reports_auth(web_server: WebServer) -> None:
    host, port = web_server.server_address[:2]
    client = RegistryClient(f"http://{host}:{port}")
    with pytest.raises(RegistryError) as info:
        client.ping()
    assert "not an OCI distribution registry" in str(info.value)
    web_server.mode = "auth"
    client.close()
    with pytest.raises(RegistryError) as info:
        client.ping()
    assert "asks for credentials" in str(info.value) and "auth.example" in str(info.value)


def test_names_are_validated_and_normalized() -> None:
    assert normalize_repository("Hello_World App") == "hello_world-app"
    assert normalize_repository("team/My.App") == "team/my.app"
    client = RegistryClient("localhost:5000")
    assert client.base_url == "http://localhost:5000"  # loopback registries speak plain HTTP
    assert RegistryClient("registry.example.com").base_url == "https://registry.example.com"
    with pytest.raises(ValueError):
        client.push(None, "Bad Repo", "t")  # type: ignore[arg-type]
