"""The front for cluster apps: the kube target (real client, fake API server) deploys, and each
app's URL is served on a wasmdev port on 127.0.0.1 that proxies to the ingress (here a real HTTP
server routing by Host, as Traefik does); requests through it are measured and recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from aiohttp import web

from devenv.engine.replay import REPLAY_HEADER, origin_of, replay_exchanges
from devenv.store.store import Store
from devenv.targets.base import KeepsImages, Target
from devenv.targets.recording_front import RecordingFront
from tests.engine.session import free_port
from tests.fakes.apiserver import FakeApiServer, fake_apiserver_fixture  # noqa: F401 - fixture
from tests.targets.kube_helpers import build, image_of, make_target


async def start_ingress(port: int, seen: list[tuple[str, str, bytes]]) -> web.AppRunner:
    async def route(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((request.headers["Host"], request.path_qs, body))
        if request.headers["Host"] != f"hello.localhost:{port}":
            return web.Response(status=404, text="no such host")
        return web.Response(
            text=f"hello got {body.decode()!r} at {request.path_qs}", headers={"X-App": "hello"}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", route)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_cluster_apps_are_served_measured_and_recorded_through_a_local_port(
    fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    store = Store()
    ingress_port, front_port = free_port(), free_port()
    seen: list[tuple[str, str, bytes]] = []
    ingress = await start_ingress(ingress_port, seen)
    inner = make_target(fake_apiserver, store, http_base_url=f"http://localhost:{ingress_port}")
    front = RecordingFront(inner, store, {"hello": front_port})
    assert isinstance(front, Target) and isinstance(front, KeepsImages)
    try:
        v1 = build("hello", "v1")
        result = await front.deploy(v1)
        assert result.urls == (f"http://127.0.0.1:{front_port}/", f"http://hello.localhost:{ingress_port}/")
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                f"http://127.0.0.1:{front_port}/cart?item=7",
                content=b"two apples",
                headers={"authorization": "x"},
            )
            assert response.status_code == 200 and response.headers["x-app"] == "hello"
            assert response.text == "hello got 'two apples' at /cart?item=7"
            assert seen[-1] == (f"hello.localhost:{ingress_port}", "/cart?item=7", b"two apples")
            await client.get(f"http://127.0.0.1:{front_port}/load", headers={REPLAY_HEADER: "1"})

        (recorded,) = store.exchanges.exchanges("hello")  # the replayed request is not traffic
        assert (recorded.method, recorded.path, recorded.query, recorded.body) == (
            "POST",
            "/cart",
            "item=7",
            b"two apples",
        )
        assert recorded.status == 200 and b"two apples" in recorded.response_body
        # Kept as sent (masked only when shown): a replay must send the same request.
        assert ("authorization", "x") in [(k.lower(), v) for k, v in recorded.headers]
        served = [(r.method, r.path, r.status) for r in store.metrics.requests("hello")]
        assert served == [("POST", "/cart", 200), ("GET", "/load", 200)]  # both in the latency graph

        report = await replay_exchanges(
            "hello", [recorded], origin_of(result.urls[0]), v1.digest, all_methods=True
        )
        assert report.replayed == 1 and report.differences == ()

        # A rollback re-applies the kept image and keeps the same front.
        await front.deploy(build("hello", "v2"))
        again = await front.redeploy_image(v1, front.kept_image("hello", v1.digest) or "")
        assert again.urls[0] == f"http://127.0.0.1:{front_port}/"
        dep = fake_apiserver.cluster.get("deployments", "default", "hello")
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == image_of(v1)

        await ingress.cleanup()  # the ingress goes away: the front says so
        async with httpx.AsyncClient(timeout=10) as client:
            down = await client.get(f"http://127.0.0.1:{front_port}/")
        assert down.status_code == 502
        assert f"the cluster's ingress at http://hello.localhost:{ingress_port} did not answer" in down.text
    finally:
        await front.close()
        await ingress.cleanup()


async def test_responses_stream_through_the_front_and_only_their_first_bytes_are_recorded(
    fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    """A large or slow response is passed on chunk by chunk, not read whole into memory first:
    the client sees the first chunk while the ingress still holds the rest back. The recording
    keeps the first ``record_body_bytes`` (from settings) and marks the rest cut off."""
    from tests.engine.session import WAIT_S

    store = Store()
    ingress_port, front_port = free_port(), free_port()
    first_seen = asyncio.Event()
    released_by_client: list[bool] = []
    chunk = b"x" * 65536

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        await response.write(b"first:" + chunk)
        try:
            await asyncio.wait_for(first_seen.wait(), WAIT_S)
            released_by_client.append(True)
        except TimeoutError:
            released_by_client.append(False)
        for _ in range(64):  # 4 MiB more
            await response.write(chunk)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", stream)
    ingress = web.AppRunner(app)
    await ingress.setup()
    await web.TCPSite(ingress, "127.0.0.1", ingress_port).start()
    inner = make_target(fake_apiserver, store, http_base_url=f"http://localhost:{ingress_port}")
    front = RecordingFront(inner, store, {"hello": front_port}, record_body_bytes=1000)
    try:
        await front.deploy(build("hello", "v1"))
        received = 0
        async with httpx.AsyncClient(timeout=WAIT_S * 2) as client:
            async with client.stream("GET", f"http://127.0.0.1:{front_port}/big") as response:
                assert response.status_code == 200
                async for part in response.aiter_raw():
                    received += len(part)
                    if received >= len(b"first:"):
                        first_seen.set()
        assert released_by_client == [True]  # the first chunk arrived before the rest was sent
        assert received == len(b"first:") + 65 * len(chunk)
        (recorded,) = store.exchanges.exchanges("hello")
        assert recorded.response_body == (b"first:" + chunk)[:1000] and recorded.response_truncated
        assert recorded.status == 200
    finally:
        await front.close()
        await ingress.cleanup()
