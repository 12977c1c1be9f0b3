"""Python implementations of the WASI 0.2 interfaces a wasi:http component imports.

One module per interface family (io, http_types + outgoing, cli, clocks, random, filesystem);
stubs lists what is refused. ``registry.link_imports`` defines a component's imports from these.
"""

from __future__ import annotations

from devenv.targets.local.wasi import cli, clocks, filesystem, io, outgoing, random
from devenv.targets.local.wasi.http_types import interfaces as http_interfaces
from devenv.targets.local.wasi.registry import Interface
from devenv.targets.local.wasi.stubs import REFUSALS


def all_interfaces() -> list[Interface]:
    return [
        *io.INTERFACES,
        *cli.INTERFACES,
        *clocks.INTERFACES,
        *random.INTERFACES,
        *filesystem.INTERFACES,
        *http_interfaces(outgoing.CLIENT_FUNCTIONS),
        *outgoing.INTERFACES,
    ]


__all__ = ["REFUSALS", "all_interfaces"]
