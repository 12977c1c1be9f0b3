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
    "spin": "Spin 3/4 host APIs are not provided by the local target; run the app on the cluster target",
    "wasi:keyvalue": "wasi:keyvalue is not provided by the local target; run the app on the cluster target",
    "wasi:config": "wasi:config is not provided by the local target; run the app on the cluster target",
}
