"""Letting an app's port go while requests arrive: every connection the embedded server took
from the port's queue gets a response or a close, never silence.

The app's listening socket outlives the server's hold on it (the target keeps a copy, as it
does while an app moves to ``spin up``), so connections made while nobody serves wait in the
kernel's queue and are taken by the next ``listen``; the removes land among connections the
server is in the middle of taking."""

from __future__ import annotations

import asyncio
import contextlib

from devenv.targets.local.messages import GuestOutput, ServedRequest
from devenv.targets.local.server import LocalServer, bind_listener

CLIENT_TIMEOUT_S = 5.0  # far above a loopback answer on a loaded machine; a hung one never comes
MOVES = 30
CLIENTS = 6


class Quiet:
    def request_served(self, served: ServedRequest) -> None:
        pass

    def guest_output(self, output: GuestOutput) -> None:
        pass


async def ask(port: int) -> str:
    """One request on a fresh connection: "answered", "closed" (no response) or "hung"."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return "refused"
    try:
        writer.write(b"GET /x HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
        try:
            data = await asyncio.wait_for(reader.read(), CLIENT_TIMEOUT_S)
        except TimeoutError:
            return "hung"
        except ConnectionError:
            return "closed"
        return "answered" if data.startswith(b"HTTP/1.1 ") else "closed"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_removing_a_port_under_traffic_answers_or_closes_every_connection() -> None:
    server = LocalServer("127.0.0.1", Quiet(), workers=1)
    server.start()
    kept = bind_listener("127.0.0.1", 0, "demo")  # the target's own copy: the port stays open
    port = kept.getsockname()[1]
    outcomes: list[str] = []
    moving = True

    async def traffic() -> None:
        while moving:
            outcomes.append(await ask(port))

    clients = [asyncio.create_task(traffic()) for _ in range(CLIENTS)]
    try:
        for _ in range(MOVES):
            await server.run(server.listen("demo", port, sock=kept.dup()))
            before = len(outcomes)
            while len(outcomes) < before + CLIENTS:  # traffic reached this listener
                await asyncio.sleep(0.001)
            await server.run(server.remove("demo"))
        await server.run(server.listen("demo", port, sock=kept.dup()))  # the queue drains here
        moving = False
        await asyncio.wait_for(asyncio.gather(*clients), CLIENT_TIMEOUT_S * 3)
    finally:
        moving = False
        for client in clients:
            client.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        await asyncio.to_thread(server.stop)
        kept.close()
    counts = {outcome: outcomes.count(outcome) for outcome in set(outcomes)}
    assert counts.get("answered", 0) > MOVES, counts
    assert "hung" not in counts and "refused" not in counts, counts

