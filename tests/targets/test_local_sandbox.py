"""The guest sees only what the manifest grants: its files (read-only) and its environment."""

from __future__ import annotations

import os
from pathlib import Path

from devenv.model import FileMount
from devenv.targets.local.target import LocalTarget
from tests.targets import local_helpers
from tests.targets.local_helpers import Client, Comp, make_app

store, target, client = local_helpers.store, local_helpers.target, local_helpers.client


async def test_granted_glob_file_is_readable_and_nothing_else(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    root = tmp_path / "app"
    (root / "public").mkdir(parents=True)
    (root / "public" / "note.txt").write_text("granted note\n")
    (root / "secret.txt").write_text("not granted\n")
    await target.deploy(make_app(root, [Comp(files=(FileMount("public/*.txt"),))]))

    granted = await client.get("demo", "/hello/file?public/note.txt")
    assert granted.status == 200 and granted.text == "granted note\n"
    for path in ("secret.txt", "../secret.txt", "../../../../etc/hostname", "/etc/hostname"):
        denied = await client.get("demo", f"/hello/file?{path}")
        assert denied.status == 404, path
        assert "cannot open file" in denied.text


async def test_directory_mount_is_read_only_at_its_destination(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    root = tmp_path / "app"
    (root / "assets").mkdir(parents=True)
    (root / "assets" / "a.txt").write_text("asset a\n")
    await target.deploy(make_app(root, [Comp(files=(FileMount("assets", "/static"),))]))
    assert (await client.get("demo", "/hello/file?a.txt")).text == "asset a\n"
    # The preopen is the directory itself: its parent (the app root, the host) is out of reach.
    assert (await client.get("demo", "/hello/file?../spin.toml")).status == 404


async def test_no_grant_means_no_filesystem(client: Client, target: LocalTarget, tmp_path: Path) -> None:
    await target.deploy(make_app(tmp_path / "app"))
    reply = await client.get("demo", "/hello/file?hello.wasm")
    assert reply.status == 404  # errno 8 (EBADF): there is no preopened directory at all
    assert reply.text.strip().endswith("08")


async def test_guest_sees_only_its_environment_and_cgi(
    client: Client, target: LocalTarget, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("WASMDEV_HOST_SECRET", "leak")
    await target.deploy(make_app(tmp_path / "app", [Comp(environment={"GREETING_STYLE": "friendly"})]))
    reply = await client.get("demo", "/hello/env")
    env = dict(line.split("=", 1) for line in reply.text.splitlines() if "=" in line)
    assert env["GREETING_STYLE"] == "friendly"
    assert "WASMDEV_HOST_SECRET" not in env
    assert not set(env) & {"PATH", "HOME", "USER"} - {"PATH_INFO"}
    assert os.environ["WASMDEV_HOST_SECRET"] == "leak"  # it was there to leak


async def test_cgi_variables_override_a_component_variable_of_the_same_name(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    await target.deploy(make_app(tmp_path / "app", [Comp(environment={"REQUEST_METHOD": "FAKE"})]))
    reply = await client.get("demo", "/hello/env")
    assert "REQUEST_METHOD=GET" in reply.text.splitlines()
    assert "REQUEST_METHOD=FAKE" not in reply.text


async def test_a_request_header_overrides_a_component_variable_of_the_same_cgi_name(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    await target.deploy(make_app(tmp_path / "app", [Comp(environment={"HTTP_X_FOO": "component"})]))
    plain = (await client.get("demo", "/hello/env")).text.splitlines()
    assert "HTTP_X_FOO=component" in plain
    with_header = (await client.get("demo", "/hello/env", headers={"X-Foo": "request"})).text.splitlines()
    assert "HTTP_X_FOO=request" in with_header and "HTTP_X_FOO=component" not in with_header


async def test_a_symlink_out_of_the_app_is_not_a_grant(
    client: Client, target: LocalTarget, tmp_path: Path
) -> None:
    import pytest

    from devenv.errors import DeployError

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret\n")
    root = tmp_path / "app"
    (root / "public").mkdir(parents=True)
    (root / "public" / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "public" / "inside.txt").write_text("inside\n")
    (root / "assets").symlink_to(outside, target_is_directory=True)

    for grant in (FileMount("public/*.txt"), FileMount("assets", "/static")):
        with pytest.raises(DeployError) as err:
            await target.deploy(make_app(root, [Comp(files=(grant,))]))
        assert "outside the app directory" in str(err.value) and str(outside) in str(err.value)
    assert target.bound_port("demo") is None  # nothing of the host was ever served

    # A symlink that stays inside the app is an ordinary grant.
    (root / "public" / "leak.txt").unlink()
    (root / "public" / "alias.txt").symlink_to(root / "public" / "inside.txt")
    await target.deploy(make_app(root, [Comp(files=(FileMount("public/*.txt"),))]))
    assert (await client.get("demo", "/hello/file?public/alias.txt")).text == "inside\n"
