"""Imports the local target refuses, and why: the reason each logged trap gives.

Every function of these packages is still defined (see registry): calling one traps the request
with a log line naming the import and this reason, and the server keeps serving.
"""

from __future__ import annotations

REFUSALS = {
    "wasi:sockets": "sockets are denied (Spin grants components no sockets; use outbound HTTP "
    "to a host in allowed_outbound_hosts)",
    "fermyon:spin": "not hosted by the local target (it hosts variables, key-value, SQLite, outbound Redis and PostgreSQL); "
    "run the app on the cluster target (`wasmdev up --target k3d`)",
    "spin": "not hosted by the local target (of the spin: packages it hosts spin:sqlite/sqlite@3.0.0 and spin:postgres/postgres@3.0.0); "
    "run the app on the cluster target (`wasmdev up --target k3d`)",
    "wasi:keyvalue": "only wasi:keyvalue@0.2.0-draft2 (store, atomics, batch) is hosted by the local target; "
    "run the app on the cluster target (`wasmdev up --target k3d`)",
    "wasi:config": "only wasi:config/store@0.2.0-draft-2024-09-27 is hosted by the local target; "
    "run the app on the cluster target (`wasmdev up --target k3d`)",
}
