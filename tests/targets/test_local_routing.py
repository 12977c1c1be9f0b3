"""Routing on the local target: real HTTP requests to a real wasmtime guest."""

from __future__ import annotations

from pathlib import Path

from devenv.targets.local.target import LocalTarget
from tests.targets import local_helpers
from tests.targets.local_helpers import Client, Comp, make_app, requests_reported

# The shared fixtures (pytest finds them as module attributes).
store, target, client = local_helpers.store, local_helpers.target, local_helpers.client


async def test_exact_and_wildcard_routes_most_specific_wins(
    target: LocalTarget, client: Client, tmp_path: Path
) -> None:
    app = make_app(
        tmp_path / "app",
        [
            Comp("exact", routes=["/hello"]),
            Comp("wild", routes=["/hello/..."]),
            Comp("deep", routes=["/hello/deep/..."]),
            Comp("root", routes=["/..."]),
        ],
    )
    result = await target.deploy(app)
    port = target.bound_port("demo")
    assert set(result.urls) == {
        f"http://127.0.0.1:{port}/hello",
        f"http://127.0.0.1:{port}/hello/deep",
        f"http://127.0.0.1:{port}/",
    }

    served = 0

    async def served_by(path: str) -> str:
        nonlocal served
        await client.get("demo", path)
        served += 1
        await requests_reported(target, served)
        return target.store.metrics.requests("demo")[-1].component

    assert await served_by("/hello") == "exact"
    assert await served_by("/hello/") == "exact"  # Spin: a trailing slash still matches the exact route
    assert await served_by("/hello/x") == "wild"
    assert await served_by("/hello/deep") == "deep"
    assert await served_by("/hello/deep/er/still") == "deep"
    assert await served_by("/hellox") == "root"
    assert await served_by("/") == "root"


async def test_wildcard_gives_path_info_and_script_name(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    await target.deploy(make_app(tmp_path / "app", [Comp("hello", routes=["/static/..."])]))
    reply = await client.get("demo", "/static/env")
    env = dict(line.split("=", 1) for line in reply.text.splitlines() if "=" in line)
    assert env["SCRIPT_NAME"] == "/static"
    assert env["PATH_INFO"] == "/env"
    assert env["X_MATCHED_ROUTE"] == "/static/..."
    assert env["X_COMPONENT_ROUTE"] == "/static"


async def test_http_base_prefixes_every_route(client: Client, target: LocalTarget, tmp_path: Path) -> None:
    result = await target.deploy(make_app(tmp_path / "app", [Comp(routes=["/hello/..."])], http_base="/api"))
    assert result.urls == (f"http://127.0.0.1:{target.bound_port('demo')}/api/hello",)
    assert (await client.get("demo", "/hello/x")).status == 404
    reply = await client.get("demo", "/api/hello/env")
    assert reply.status == 200
    env = dict(line.split("=", 1) for line in reply.text.splitlines() if "=" in line)
    assert env["X_MATCHED_ROUTE"] == "/api/hello/..."
    assert env["X_RAW_COMPONENT_ROUTE"] == "/hello/..."
    assert env["X_BASE_PATH"] == "/api"
    assert env["SCRIPT_NAME"] == "/api/hello"
    assert env["PATH_INFO"] == "/env"


async def test_unmatched_path_is_404_listing_the_routes(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    await target.deploy(make_app(tmp_path / "app", [Comp("hello", routes=["/hello", "/files/..."])]))
    reply = await client.get("demo", "/nothing/here")
    assert reply.status == 404
    assert "/nothing/here" in reply.text
    assert "/hello" in reply.text and "/files/..." in reply.text and "`hello`" in reply.text
    await requests_reported(target, 1)
    record = target.store.metrics.requests("demo")[-1]
    assert (record.status, record.path) == (404, "/nothing/here")


async def test_two_apps_get_their_own_ports(client: Client, target: LocalTarget, tmp_path: Path) -> None:
    await target.deploy(make_app(tmp_path / "a", [Comp(routes=["/a"])], name="demo"))
    await target.deploy(make_app(tmp_path / "b", [Comp(routes=["/b"])], name="other"))
    assert target.bound_port("demo") != target.bound_port("other")
    assert (await client.get("demo", "/a")).status == 200
    assert (await client.get("demo", "/b")).status == 404
    assert (await client.get("other", "/b")).status == 200
    await target.remove("other")
    assert target.bound_port("other") is None
    assert (await client.get("demo", "/a")).status == 200
