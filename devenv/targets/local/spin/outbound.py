"""What Spin's outbound clients on the local target (Redis, PostgreSQL, MySQL, MQTT) share: the
time a call may still take, and the log line for an address ``allowed_outbound_hosts`` denies."""

from __future__ import annotations

import time

from devenv.targets.local.wasi.host import HostContext

__all__ = ["deny", "remaining"]


def remaining(ctx: HostContext) -> float:
    """Seconds left before the request's deadline (a little more than none, for timeouts)."""
    return max(0.001, ctx.deadline - time.monotonic())


def deny(ctx: HostContext, what: str, scheme: str, host: str, port: int | None) -> None:
    """Say in the app's log that ``scheme://host[:port]`` is not allowed, and where to allow it."""
    origin = f"{scheme}://{host}" + (f":{port}" if port is not None else "")
    ctx.note(
        f"denied outbound {what} to {origin}: not in allowed_outbound_hosts "
        f"(add it to [component.{ctx.config.component_id}] in spin.toml)"
    )
