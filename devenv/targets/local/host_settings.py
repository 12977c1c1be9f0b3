"""What Spin's host APIs need from the serving side for one deploy of one app.

Kept apart from ``spin/`` (which imports the Redis and PostgreSQL clients) so the deploy messages
and the version builder can carry it without loading those: it is pickled into every serving
process's ``Deploy``, so a process resolves variables and stores exactly as wasmdev's own check did.
"""

from __future__ import annotations

from dataclasses import dataclass

from devenv.runtime_config import RuntimeConfig


@dataclass(frozen=True)
class HostApiSettings:
    # The runtime config file as read for this deploy (an edit to it applies on the next deploy).
    runtime_config: RuntimeConfig | None = None
    # The app's own "host:port", where `http://self` and relative URLs go.
    self_origin: str | None = None


def origin(host: str, port: int) -> str:
    """"host:port" as a URL authority (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
