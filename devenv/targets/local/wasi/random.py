"""wasi:random 0.2: secure bytes from the OS, insecure ones from a fast PRNG."""

from __future__ import annotations

import os
import random as _prng

from devenv.targets.local.wasi.host import HostContext
from devenv.targets.local.wasi.io import MAX_CHUNK
from devenv.targets.local.wasi.registry import Interface

_insecure = _prng.Random()


def _checked(ctx: HostContext, n: int) -> int:
    if n > MAX_CHUNK:
        ctx.trap(f"asked for {n} random bytes in one call (at most {MAX_CHUNK})")
    return n


def _random_bytes(ctx: HostContext, n: int) -> bytes:
    return os.urandom(_checked(ctx, n))


def _random_u64(ctx: HostContext) -> int:
    return int.from_bytes(os.urandom(8), "little")


def _insecure_bytes(ctx: HostContext, n: int) -> bytes:
    return _insecure.randbytes(_checked(ctx, n))


def _insecure_u64(ctx: HostContext) -> int:
    return _insecure.getrandbits(64)


def _insecure_seed(ctx: HostContext) -> tuple[int, int]:
    return (_random_u64(ctx), _random_u64(ctx))


INTERFACES = [
    Interface(
        "wasi:random/random",
        functions={"get-random-bytes": _random_bytes, "get-random-u64": _random_u64},
    ),
    Interface(
        "wasi:random/insecure",
        functions={"get-insecure-random-bytes": _insecure_bytes, "get-insecure-random-u64": _insecure_u64},
    ),
    Interface("wasi:random/insecure-seed", functions={"insecure-seed": _insecure_seed}),
]
