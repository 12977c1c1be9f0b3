"""Outbound Redis, PostgreSQL, MySQL and MQTT from a real spin-sdk component
(tests/apps/spin-apis-py) against real servers: Debian's redis-server on 127.0.0.1:6379,
PostgreSQL on 127.0.0.1:5432 (user postgres, password postgres, database wasmdev_test), MariaDB
on 127.0.0.1:3306 (user wasmdev, password wasmdev, database wasmdev_test) and the mosquitto
broker on 127.0.0.1:1883 (anonymous), which .ci/run starts."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import mysql.connector
import paho.mqtt.client as paho
import psycopg
import pytest
import redis

from devenv.targets.local.runtime import WasmRuntime
from tests.targets.spin_apps import SpinServing, app_wasm, copy_app

pytestmark = pytest.mark.slow

APP = "spin-apis-py"
REDIS = "redis://127.0.0.1:6379"
PG = "postgres://postgres:postgres@127.0.0.1:5432/wasmdev_test"
MYSQL = "mysql://wasmdev:wasmdev@127.0.0.1/wasmdev_test"
MQTT = "mqtt://127.0.0.1:1883?client_id=wasmdev-test"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("redis-server is not running on 127.0.0.1:6379 (.ci/run starts it)")
    yield client
    client.close()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[psycopg.Connection]:
    try:
        conn = psycopg.connect(PG, autocommit=True, connect_timeout=5)
    except psycopg.Error:
        pytest.skip(
            "PostgreSQL is not running on 127.0.0.1:5432 with database wasmdev_test (.ci/run starts it)"
        )
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def mysql_server() -> Iterator[Any]:
    try:
        conn = mysql.connector.connect(
            host="127.0.0.1", user="wasmdev", password="wasmdev", database="wasmdev_test", autocommit=True
        )
    except mysql.connector.Error:
        pytest.skip("MariaDB is not running on 127.0.0.1:3306 with database wasmdev_test (.ci/run starts it)")
    yield conn
    conn.close()


class Subscriber:
    """A real MQTT client subscribed to one topic, keeping what arrives."""

    def __init__(self, topic: str) -> None:
        self.messages: list[tuple[bytes, int]] = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda _c, _u, msg: self.messages.append((msg.payload, msg.qos))
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.subscribe(topic, qos=2)
        assert subscribed.wait(10), "the broker never acknowledged the subscription"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def mqtt_topic() -> Iterator[tuple[str, Subscriber]]:
    topic = f"wasmdev/test/{uuid.uuid4().hex[:12]}"
    try:
        subscriber = Subscriber(topic)
    except OSError:
        pytest.skip("no MQTT broker on 127.0.0.1:1883 (.ci/run starts mosquitto)")
    yield topic, subscriber
    subscriber.close()


@pytest.fixture(scope="module")
def runtime() -> Iterator[WasmRuntime]:
    rt = WasmRuntime()
    yield rt
    rt.close()


@pytest.fixture
async def serving(runtime: WasmRuntime, tmp_path: Path) -> AsyncIterator[SpinServing]:
    s = SpinServing(runtime)
    await s.listen(APP)
    await s.deploy(copy_app(APP, tmp_path), {APP: app_wasm(APP)}, env={"SPIN_VARIABLE_API_TOKEN": "t"})
    yield s
    s.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        yield session


async def call(http: aiohttp.ClientSession, serving: SpinServing, path: str, query: dict) -> tuple[int, dict]:
    async with http.post(serving.url(path), data=json.dumps(query)) as r:
        return r.status, await r.json()


async def test_redis_set_get_incr_execute(
    serving: SpinServing, http: aiohttp.ClientSession, redis_server: redis.Redis
) -> None:
    key = f"wasmdev-test-{uuid.uuid4().hex}"
    value = bytes(range(256))
    status, out = await call(
        http, serving, "/redis", {"address": REDIS, "set": [key, value.hex()], "get": key}
    )
    assert (status, out["get"]) == (200, value.hex())
    assert redis_server.get(key) == value  # really in the server
    status, out = await call(http, serving, "/redis", {"address": REDIS, "incr": key + "-n"})
    assert out["incr"] == 1
    status, out = await call(
        http, serving, "/redis", {"address": REDIS, "execute": ["INCRBY", key + "-n", 41]}
    )
    assert out["execute"] == [["RedisResult_Int64", 42]]
    assert redis_server.get(key + "-n") == b"42"
    redis_server.delete(key, key + "-n")


async def test_redis_outside_allowed_outbound_hosts_is_invalid_address(
    serving: SpinServing, http: aiohttp.ClientSession, redis_server: redis.Redis
) -> None:
    status, out = await call(http, serving, "/redis", {"address": "redis://localhost:6379", "get": "x"})
    assert (status, out["error"]) == (500, "Error_InvalidAddress")
    assert "denied outbound Redis to redis://localhost:6379" in serving.recorder.text()


async def test_postgres_execute_and_typed_rows(
    serving: SpinServing, http: aiohttp.ClientSession, pg_server: psycopg.Connection
) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    status, out = await call(
        http,
        serving,
        "/pg",
        {"address": PG, "execute": f"CREATE TABLE {table} (i INT, s TEXT, b BYTEA, n BIGINT)"},
    )
    assert status == 200, out
    status, out = await call(
        http,
        serving,
        "/pg",
        {
            "address": PG,
            "execute": f"INSERT INTO {table} VALUES ($1, $2, $3, $4)",
            "params": [["int32", 7], ["str", "héllo"], ["binary", "00ff"], ["null", None]],
        },
    )
    assert out == {"execute": 1}
    status, out = await call(
        http,
        serving,
        "/pg",
        {"address": PG, "query": f"SELECT i, s, b, n FROM {table} WHERE i = $1", "params": [["int32", 7]]},
    )
    assert out["columns"] == [["i", "INT32"], ["s", "STR"], ["b", "BINARY"], ["n", "INT64"]]
    assert out["rows"] == [[["Int32", 7], ["Str", "héllo"], ["Binary", "00ff"], ["DbNull", None]]]
    assert pg_server.execute(f"SELECT s FROM {table}").fetchall() == [("héllo",)]
    pg_server.execute(f"DROP TABLE {table}")


async def test_postgres_errors_as_spin_returns_them(
    serving: SpinServing, http: aiohttp.ClientSession, pg_server: psycopg.Connection
) -> None:
    status, out = await call(http, serving, "/pg", {"address": PG, "query": "SELEKT 1"})
    assert (status, out["error"]) == (500, "Error_QueryFailed")
    assert "syntax error" in out["detail"]
    denied = "postgres://postgres:postgres@localhost:5432/wasmdev_test"
    status, out = await call(http, serving, "/pg", {"address": denied, "query": "SELECT 1"})
    assert out["error"] == "Error_ConnectionFailed"
    assert "denied outbound PostgreSQL to postgres://localhost:5432" in serving.recorder.text()


async def test_spin3_postgres_dates_and_times(
    runtime: WasmRuntime, http: aiohttp.ClientSession, pg_server: psycopg.Connection, tmp_path: Path
) -> None:
    # spin:postgres/postgres@3.0.0 from a Spin 3-era app (spin-sdk 3.4.1, tests/apps/spin3-sdk-py)
    name = "spin3-sdk-py"
    s = SpinServing(runtime)
    await s.listen(name)
    try:
        await s.deploy(copy_app(name, tmp_path), {name: app_wasm(name)})
        async with http.post(s.url("/pg"), data=PG.encode()) as r:
            assert r.status == 200, await r.text()
            out = await r.json()
    finally:
        s.stop()
    assert out["changed"] == 1
    assert out["columns"] == [["d", "DATE"], ["tm", "TIME"], ["dt", "DATETIME"], ["s", "STR"]]
    assert out["rows"] == [
        [
            ["DbValue_Date", [2026, 12, 4]],
            ["DbValue_Time", [5, 6, 7, 8000]],
            ["DbValue_Datetime", [2026, 12, 4, 5, 6, 7, 0]],
            ["DbValue_Str", "x"],
        ]
    ]


async def test_mysql_prepared_statements_and_columns_typed_as_spin_types_them(
    serving: SpinServing, http: aiohttp.ClientSession, mysql_server: Any
) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    create = (
        f"CREATE TABLE {table} (i INT, u INT UNSIGNED, t TINYINT, s VARCHAR(20), x TEXT, "
        "b VARBINARY(8), n BIGINT, d DATE)"
    )
    status, out = await call(http, serving, "/mysql", {"address": MYSQL, "execute": create})
    assert (status, out) == (200, {"execute": None}), out
    status, out = await call(
        http,
        serving,
        "/mysql",
        {
            "address": MYSQL,
            "execute": f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            "params": [
                ["int32", -7], ["uint32", 7], ["int32", 3], ["str", "héllo"], ["str", "long text"],
                ["binary", "00ff"], ["null", None], ["null", None],
            ],
        },
    )  # fmt: skip
    assert status == 200, out
    status, out = await call(
        http,
        serving,
        "/mysql",
        {"address": MYSQL, "query": f"SELECT * FROM {table} WHERE i = ?", "params": [["int32", -7]]},
    )
    assert status == 200, out
    assert out["columns"] == [
        ["i", "INT32"], ["u", "UINT32"], ["t", "INT8"], ["s", "STR"], ["x", "STR"],
        ["b", "BINARY"], ["n", "INT64"], ["d", "OTHER"],
    ]  # fmt: skip
    assert out["rows"] == [
        [["Int32", -7], ["Uint32", 7], ["Int8", 3], ["Str", "héllo"], ["Str", "long text"],
         ["Binary", "00ff"], ["DbNull", None], ["DbNull", None]],
    ]  # fmt: skip
    cursor = mysql_server.cursor()
    cursor.execute(f"SELECT s FROM {table}")
    assert cursor.fetchall() == [("héllo",)]
    cursor.execute(f"DROP TABLE {table}")
    cursor.close()


async def test_mysql_errors_as_spin_returns_them(
    serving: SpinServing, http: aiohttp.ClientSession, mysql_server: Any
) -> None:
    status, out = await call(http, serving, "/mysql", {"address": MYSQL, "query": "SELEKT 1"})
    assert (status, out["error"]) == (500, "Error_QueryFailed") and "SELEKT" in out["detail"]
    # A value in a column Spin cannot map (a DATE) fails the query, as in Spin.
    status, out = await call(
        http, serving, "/mysql", {"address": MYSQL, "query": "SELECT DATE('2026-12-04')"}
    )
    assert (status, out["error"]) == (500, "Error_ValueConversionFailed")
    denied = "mysql://wasmdev:wasmdev@localhost/wasmdev_test"
    status, out = await call(http, serving, "/mysql", {"address": denied, "query": "SELECT 1"})
    assert (status, out["error"]) == (500, "Error_ConnectionFailed") and "not permitted" in out["detail"]
    assert "denied outbound MySQL to mysql://localhost" in serving.recorder.text()
    wrong = "mysql://wasmdev:nope@127.0.0.1/wasmdev_test"
    status, out = await call(http, serving, "/mysql", {"address": wrong, "query": "SELECT 1"})
    assert (status, out["error"]) == (500, "Error_ConnectionFailed") and "Access denied" in out["detail"]


async def test_mqtt_publishes_reach_a_real_subscriber_at_each_qos(
    serving: SpinServing, http: aiohttp.ClientSession, mqtt_topic: tuple[str, Subscriber]
) -> None:
    topic, subscriber = mqtt_topic
    for qos in (0, 1, 2):
        payload = bytes([0, 255, qos]) + "héllo".encode()
        query = {"address": MQTT, "topic": topic, "payload": payload.hex(), "qos": qos}
        status, out = await call(http, serving, "/mqtt", query)
        assert (status, out) == (200, {"published": True}), out
    deadline = time.monotonic() + 10
    while len(subscriber.messages) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert sorted(subscriber.messages, key=lambda m: m[0][2]) == [
        (bytes([0, 255, q]) + "héllo".encode(), q) for q in (0, 1, 2)
    ]


async def test_mqtt_errors_as_spin_returns_them(
    serving: SpinServing, http: aiohttp.ClientSession, mqtt_topic: tuple[str, Subscriber]
) -> None:
    topic, _subscriber = mqtt_topic
    publish = {"topic": topic, "payload": "00"}
    status, out = await call(http, serving, "/mqtt", {**publish, "address": "mqtt://127.0.0.1:1883"})
    assert (status, out["error"]) == (500, "Error_InvalidAddress")  # rumqttc requires a client_id
    assert "client_id is required" in serving.recorder.text()
    denied = "mqtt://localhost:1883?client_id=x"
    status, out = await call(http, serving, "/mqtt", {**publish, "address": denied})
    assert (status, out["error"]) == (500, "Error_ConnectionFailed") and "not permitted" in out["detail"]
    assert "denied outbound MQTT to mqtt://localhost:1883" in serving.recorder.text()
