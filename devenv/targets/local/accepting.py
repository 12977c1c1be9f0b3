"""Taking connections from a listening socket into an aiohttp server, losing none when it stops.

asyncio's own server (``loop.create_server``, aiohttp's ``SockSite``) takes a connection from
the kernel and makes its transport a loop turn later; a connection taken just before that
server closes is then dropped without being closed (the transport refuses a closed server),
and its client waits until its own timeout. That happens whenever a port changes hands under
traffic (an app moving between the embedded host and ``spin up``), so the servers that let a
port go accept with ``PortAcceptor`` instead: every connection it takes is tracked until its
transport exists, and ``stop()`` returns only once each one belongs to the aiohttp server, whose
shutdown then answers or closes it.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
from collections.abc import Callable

__all__ = ["PortAcceptor", "ACCEPT_RETRY_S"]

ACCEPT_RETRY_S = 1.0  # out of file descriptors: how long the port waits before accepting again
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class PortAcceptor:
    """Accepts from ``sock`` (a listening socket it then owns) into ``protocol_factory`` (an
    aiohttp ``Server``). ``per_wakeup``: connections taken each time the socket is readable
    (1 when several processes share the socket, so they take turns). ``on_error`` is told
    when the process is out of file descriptors (it retries after ``ACCEPT_RETRY_S``)."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        *,
        per_wakeup: int,
        on_error: Callable[[str], None],
    ) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.protocol_factory = protocol_factory
        self.per_wakeup = per_wakeup
        self.on_error = on_error
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: set[asyncio.Task[tuple[asyncio.Transport, asyncio.Protocol]]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._stopped = False

    def start(self) -> None:
        """Accept on the running loop from now on."""
        self._loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        self._loop.add_reader(self.sock.fileno(), self._accept)

    async def stop(self) -> None:
        """Stop accepting and close this copy of the socket (connections still queued wait for
        whoever holds another copy); return once every connection taken is the server's."""
        if self._stopped:
            return
        self._stopped = True
        if self._retry is not None:
            self._retry.cancel()
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        await asyncio.gather(*self._connecting, return_exceptions=True)

    def _accept(self) -> None:
        loop = self._loop
        assert loop is not None
        for _ in range(self.per_wakeup):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # the queue is empty (or another process sharing the socket took it)
            except OSError as err:
                if err.errno not in _OUT_OF_RESOURCES:
                    raise
                # The kernel keeps the port readable: stop listening for a while, as asyncio does.
                self.on_error(f"cannot accept a connection: {err.strerror or err}; retrying in {ACCEPT_RETRY_S:.0f}s")
                loop.remove_reader(self.sock.fileno())
                self._retry = loop.call_later(ACCEPT_RETRY_S, self._accept_again)
                return
            conn.setblocking(False)
            task = loop.create_task(loop.connect_accepted_socket(self.protocol_factory, conn))
            self._connecting.add(task)
            task.add_done_callback(functools.partial(self._connected, conn))

    def _accept_again(self) -> None:
        self._retry = None
        if not self._stopped and self._loop is not None:
            self._loop.add_reader(self.sock.fileno(), self._accept)

    def _connected(
        self, conn: socket.socket, task: asyncio.Task[tuple[asyncio.Transport, asyncio.Protocol]]
    ) -> None:
        """The connection's transport is made (it belongs to the server now), or could not be:
        then the connection is closed here, not left to the garbage collector."""
        self._connecting.discard(task)
        if task.cancelled() or task.exception() is not None:
            conn.close()
