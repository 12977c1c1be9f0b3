"""Outbound MQTT (``fermyon:spin/mqtt@2.0.0``, with Eclipse paho-mqtt), only to
``allowed_outbound_hosts`` (``mqtt://host[:port]``, 1883 when none is named).

Faithful to Spin's host (crates/factor-outbound-mqtt, on rumqttc): ``open`` checks the address
against the allow-list (``connection-failed``, "address ... is not permitted") and parses it as
rumqttc does (``mqtt://`` or ``tcp://``, TLS with ``mqtts://`` or ``ssl://``, a ``client_id``
query parameter required, other rumqttc options accepted, anything else ``invalid-address``),
but connects only when the first message is published, as rumqttc's event loop does. ``publish``
returns once the broker has the message: sent for QoS 0, acknowledged (PUBACK) for 1, completed
(PUBCOMP) for 2; a broker that cannot be reached or refuses the login is ``connection-failed``.
MQTT 3.1.1, as rumqttc speaks it. Every wait is bounded by the request's deadline, and
connections are closed when the request ends.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from wasmtime.component import ResourceAny

from devenv.targets.local.spin.outbound import deny, remaining
from devenv.targets.local.wasi.codec import Case, Err, Ok
from devenv.targets.local.wasi.host import HostContext, Kind, Resource
from devenv.targets.local.wasi.outgoing import allowed
from devenv.targets.local.wasi.registry import Interface

if TYPE_CHECKING:  # loaded on first use (outbound_db.py says why)
    import paho.mqtt.client as paho

__all__ = ["INTERFACES"]

_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}
# What rumqttc's MqttOptions::parse_url accepts besides client_id; any other option is an error.
_OPTIONS = frozenset(
    {
        "keep_alive_secs",
        "clean_session",
        "max_incoming_packet_size_bytes",
        "max_outgoing_packet_size_bytes",
        "request_channel_capacity_num",
        "max_request_batch_num",
        "pending_throttle_usecs",
        "inflight_num",
        "conn_timeout_secs",
    }
)
_QOS = {"at-most-once": 0, "at-least-once": 1, "exactly-once": 2}


class MqttConnection(Resource):
    """An address parsed at ``open``; the client connects on the first publish."""

    KIND = Kind.SPIN_MQTT_CONNECTION

    def __init__(
        self, host: str, port: int, tls: bool, client_id: str, username: str, password: str, keep_alive: int
    ):
        self.host, self.port, self.tls = host, port, tls
        self.client_id, self.username, self.password = client_id, username, password
        self.keep_alive = keep_alive
        self.client: paho.Client | None = None

    def close(self) -> None:
        if self.client is not None:
            # Disconnect first: it wakes the network thread, which then ends at once; joining
            # it first waits out its 1 s select (every request that published took 1 s longer).
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None


def _open(ctx: HostContext, address: str, username: str, password: str, keep_alive: int) -> Any:
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        return Err(Case("invalid-address"))
    scheme = parts.scheme.lower()
    if parts.hostname and not allowed(ctx.config.allowed_outbound_hosts, "mqtt", parts.hostname, port):
        deny(ctx, "MQTT", "mqtt", parts.hostname, port)
        return Err(Case("connection-failed", f"address {address} is not permitted"))
    options = dict(parse_qsl(parts.query))
    client_id = options.pop("client_id", None)
    if scheme not in _PORTS or not parts.hostname or not client_id or set(options) - _OPTIONS:
        ctx.note(
            f"MQTT address {address!r} is not one Spin accepts: mqtt://host[:port]?client_id=NAME "
            "(client_id is required)"
        )
        return Err(Case("invalid-address"))
    conn = MqttConnection(
        parts.hostname,
        port or _PORTS[scheme],
        scheme in ("mqtts", "ssl"),
        unquote(client_id),
        username,
        password,
        max(0, int(keep_alive)),
    )
    ctx.closers.append(conn.close)
    return Ok(ctx.own(conn))


def _connect(ctx: HostContext, conn: MqttConnection) -> paho.Client:
    import paho.mqtt.client as paho

    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=conn.client_id,
        protocol=paho.MQTTv311,
        reconnect_on_failure=False,
    )
    if conn.username or conn.password:
        client.username_pw_set(conn.username, conn.password)
    if conn.tls:
        client.tls_set()
    client.connect_timeout = remaining(ctx)
    answered = threading.Event()
    refused: list[str] = []

    def on_connect(_client: object, _userdata: object, _flags: object, reason: Any, _props: object) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        answered.set()

    client.on_connect = on_connect
    client.connect(conn.host, conn.port, keepalive=conn.keep_alive)
    client.loop_start()
    conn.client = client
    if not answered.wait(remaining(ctx)):
        raise TimeoutError(
            f"no answer from the broker at {conn.host}:{conn.port} before the request's deadline"
        )
    if refused:
        raise ConnectionError(f"the broker refused the connection: {refused[0]}")
    return client


def _publish(ctx: HostContext, self: ResourceAny, topic: str, payload: Any, qos: str) -> Any:
    conn = ctx.borrow(self, MqttConnection)
    try:
        client = conn.client or _connect(ctx, conn)
        info = client.publish(topic, bytes(payload), qos=_QOS[qos])
        info.wait_for_publish(timeout=remaining(ctx))
        if not info.is_published():
            raise TimeoutError("the broker did not acknowledge the message before the request's deadline")
    except (OSError, ValueError, RuntimeError) as err:
        return Err(Case("connection-failed", str(err) or type(err).__name__))
    return Ok(None)


FUNCTIONS = {
    "[static]connection.open": _open,
    "[method]connection.publish": _publish,
}

INTERFACES = [
    Interface(
        "fermyon:spin/mqtt@2.0.0", resources={"connection": Kind.SPIN_MQTT_CONNECTION}, functions=FUNCTIONS
    ),
]
