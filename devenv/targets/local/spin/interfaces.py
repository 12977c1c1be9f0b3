"""Every Spin host-API interface the local target defines (linked like the WASI ones)."""

from __future__ import annotations

from devenv.targets.local.spin import key_value, outbound_db, outbound_mqtt, outbound_mysql, sqlite, variables
from devenv.targets.local.wasi.registry import Interface


def spin_interfaces() -> list[Interface]:
    return [
        *variables.INTERFACES,
        *key_value.INTERFACES,
        *sqlite.INTERFACES,
        *outbound_db.INTERFACES,
        *outbound_mysql.INTERFACES,
        *outbound_mqtt.INTERFACES,
    ]
