"""Which port each app of the local target gets, and the listening sockets this process owns.

Each app gets its own port (``[apps.NAME].port``, else ``[local].base_port`` plus the app's
index), so apps' routes never collide and an app's URLs stay stable across restarts. The
listening socket of an app the embedded host serves is bound here, by the target, not by the
server: the app's own address is part of what its components are linked with, and a copy of
the socket is what keeps the port open while the app moves to or from ``spin up``.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

from devenv.targets.local.server import bind_listener

if TYPE_CHECKING:
    from devenv.config import Settings

__all__ = ["AppPorts"]


class AppPorts:
    """Planned ports, the ports apps are bound to now, and the sockets bound here."""

    def __init__(self, settings: Settings, host: str, app_ports: Mapping[str, int] | None = None) -> None:
        self.settings = settings
        self.host = host
        self._planned: dict[str, int] = dict(app_ports or {})
        self._bound: dict[str, int] = {}  # app -> the port it serves on now (embedded or Spin)
        self._sockets: dict[str, socket.socket] = {}  # app -> its listening socket, bound here

    # --- planned ports -------------------------------------------------------------------------

    def port_for(self, app: str) -> int:
        if app in self._bound:
            return self._bound[app]
        if app not in self._planned:
            # An app the workspace did not list when the target was made: the next free slot.
            explicit = getattr(self.settings.app(app), "port", None)
            used = set(self._planned.values())
            port = explicit or next(
                p for p in itertools.count(int(self.settings.local.base_port)) if p not in used
            )
            self._planned[app] = port
        return self._planned[app]

    # --- bound ports ---------------------------------------------------------------------------

    def bound_port(self, app: str) -> int | None:
        return self._bound.get(app)

    def is_bound(self, app: str) -> bool:
        return app in self._bound

    def bound_apps(self) -> list[str]:
        return list(self._bound)

    def mark_bound(self, app: str, port: int) -> None:
        self._bound[app] = port

    def unmark(self, app: str) -> None:
        self._bound.pop(app, None)

    # --- sockets -------------------------------------------------------------------------------

    def socket(self, app: str) -> socket.socket | None:
        return self._sockets.get(app)

    def listen(self, app: str) -> socket.socket:
        """``app``'s listening socket, bound to its planned port now if it has none."""
        sock = self._sockets.get(app)
        if sock is None:
            sock = self._sockets[app] = bind_listener(self.host, self.port_for(app), app)
        return sock

    def adopt(self, app: str, sock: socket.socket) -> None:
        """``sock`` (handed over from Spin's proxy) is ``app``'s listening socket from now on."""
        self._sockets[app] = sock

    def copy(self, app: str) -> socket.socket | None:
        """A copy of ``app``'s listening socket, for whoever serves the port next."""
        held = self._sockets.get(app)
        return held.dup() if held is not None else None

    def close(self, app: str) -> None:
        sock = self._sockets.pop(app, None)
        if sock is not None:
            sock.close()

    def close_all(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self._bound.clear()
