"""Publishes to an MQTT broker per request (fermyon:spin/mqtt@2.0.0)."""

from componentize_py_types import Ok
from spin_sdk.wit import exports
from spin_sdk.wit.imports import fermyon_spin_mqtt_2_0_0 as mqtt
from spin_sdk.wit.imports.wasi_http_types_0_2_0 import (
    Fields,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class WasiHttpIncomingHandler020(exports.WasiHttpIncomingHandler020):
    def handle(self, request, response_out: ResponseOutparam) -> None:
        conn = mqtt.Connection.open("mqtt://127.0.0.1:1883", "", "", 30)
        conn.publish("wasmdev/test", b"hello", mqtt.Qos.AT_LEAST_ONCE)
        response = OutgoingResponse(Fields())
        response.set_status_code(200)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(b"published")
        OutgoingBody.finish(body, None)
