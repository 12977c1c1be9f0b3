"""Opens a MySQL connection per request (fermyon:spin/mysql@2.0.0)."""

from componentize_py_types import Ok
from spin_sdk.wit import exports
from spin_sdk.wit.imports import fermyon_spin_mysql_2_0_0 as mysql
from spin_sdk.wit.imports.wasi_http_types_0_2_0 import (
    Fields,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class WasiHttpIncomingHandler020(exports.WasiHttpIncomingHandler020):
    def handle(self, request, response_out: ResponseOutparam) -> None:
        conn = mysql.Connection.open("mysql://root@127.0.0.1/test")
        rows = conn.query("SELECT 1", [])
        response = OutgoingResponse(Fields())
        response.set_status_code(200)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(str(len(rows.rows)).encode())
        OutgoingBody.finish(body, None)
