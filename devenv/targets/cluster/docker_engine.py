"""The Docker engine the cluster targets drive through the Docker SDK: one way to reach it, and
one message when it does not answer (not running, a bad DOCKER_HOST, no permission)."""

from __future__ import annotations

import os
from typing import Any

from devenv.errors import TargetUnavailable
from devenv.targets.cluster.node_readiness import first_line


def unreachable(exc: BaseException) -> TargetUnavailable:
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return TargetUnavailable(
        what=f"the Docker engine is not reachable at {where} ({first_line(exc)})",
        fix="start Docker (`dockerd &`, `sudo systemctl start docker`, or open Docker Desktop), "
        "then check with `docker info`",
    )


def connect(timeout: float) -> Any:
    """A Docker SDK client; TargetUnavailable when the engine does not answer (``from_env``
    already asks it for its API version)."""
    import docker  # imported here: the local target must not pay for it

    try:
        return docker.from_env(timeout=timeout)
    except Exception as exc:  # DockerException, requests' ConnectionError, a bad DOCKER_HOST …
        raise unreachable(exc) from exc


def ping() -> None:
    """Raise TargetUnavailable unless a Docker engine answers (DOCKER_HOST or the default socket)."""
    client = connect(timeout=5)
    try:
        client.ping()
    except Exception as exc:  # the engine went away between the version check and the ping
        raise unreachable(exc) from exc
    finally:
        client.close()
