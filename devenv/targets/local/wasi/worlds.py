"""Which world a component targets, read from its own type: can this host serve it?

Served: a component exporting ``wasi:http/incoming-handler@0.2.x`` (Spin 2/3's
``fermyon:spin/http-trigger@2.0.0``, ``wasi:http/proxy@0.2.x``). Recognised and refused with the
fix: WASI 0.3 handlers (``wasi:http/handler@0.3*``, spin-sdk 5's default world
``spin:up/http-trigger@4.x``), 0.2 release candidates, and wasi:cli commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import wasmtime
from wasmtime.component import Component

_HANDLER_02 = re.compile(r"^wasi:http/incoming-handler@0\.2\.\d+$")
_SPIN4_FIX = (
    "run it on the cluster target (a Spin 4 runtime), or build it for fermyon:spin/http-trigger@2.0.0"
)


@dataclass(frozen=True)
class World:
    handler: str | None  # the export to call ("wasi:http/incoming-handler@0.2.0"), None if refused
    reason: str = ""
    fix: str = ""
    imports: tuple[str, ...] = ()
    exports: tuple[str, ...] = ()


def classify(component: Component, engine: wasmtime.Engine) -> World:
    ty = component.type
    imports = tuple(ty.imports(engine))
    exports = tuple(ty.exports(engine))
    handler = next((e for e in exports if _HANDLER_02.match(e)), None)
    if handler is not None:
        return World(handler, imports=imports, exports=exports)
    p3 = [e for e in exports if e.startswith("wasi:http/handler@0.3")]
    spin4 = [i for i in imports if i.startswith("spin:up/") or "@0.3" in i]
    if p3 or spin4:
        return World(
            None,
            reason=f"a WASI 0.3 / Spin 4 component (exports {', '.join(p3 or exports) or 'nothing'}; "
            "world spin:up/http-trigger@4.x): needs the cluster target / a Spin 4 runtime",
            fix=_SPIN4_FIX,
            imports=imports,
            exports=exports,
        )
    rc = [e for e in exports if e.startswith("wasi:http/incoming-handler@0.2.0-rc")]
    if rc:
        return World(
            None,
            reason=f"exports {rc[0]}, a WASI 0.2 release candidate this host does not serve",
            fix="rebuild with a current SDK for fermyon:spin/http-trigger@2.0.0, or use the cluster target",
            imports=imports,
            exports=exports,
        )
    if any(e.startswith("wasi:cli/run@") for e in exports):
        return World(
            None,
            reason="a wasi:cli command component (exports wasi:cli/run), not an HTTP handler",
            fix='for a WASI command use a WAGI module (executor = { type = "wagi" }); for HTTP export '
            "wasi:http/incoming-handler@0.2.x",
            imports=imports,
            exports=exports,
        )
    return World(
        None,
        reason=f"exports no wasi:http/incoming-handler@0.2.x (exports: {', '.join(exports) or 'nothing'})",
        fix="build it for fermyon:spin/http-trigger@2.0.0 or wasi:http/proxy@0.2.x",
        imports=imports,
        exports=exports,
    )
