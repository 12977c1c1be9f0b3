"""Replay and load tests against real builds served by the real local target over real HTTP.

Every real request is recorded by the server itself; the sessions' own polls (``wait_body``)
carry the replay header so they are not."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx

from devenv.engine.replay import REPLAY_HEADER, body_diff, header_changes
from devenv.model import RecordedExchange
from tests.engine.session import Session, dev_session
from tests.engine.wat_app import set_body, write_wat_app


async def record_real_request(s: Session, app: str, suffix: str = "?q=1") -> RecordedExchange:
    """One real GET to the app, as the server recorded it."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(s.url(app) + suffix, headers={"authorization": "Bearer s3cret"})
    request_id = response.headers.get("x-request-id", "")
    query = urlsplit(s.url(app) + suffix).query

    def recorded() -> RecordedExchange | None:
        return next((e for e in s.store.exchanges.exchanges(app) if e.query == query), None)

    await s.wait(lambda _st: recorded() is not None, f"the server's record of {suffix} ({request_id})")
    exchange = recorded()
    assert exchange is not None
    return exchange


async def test_replay_shows_the_body_difference_and_none_after_a_rollback(
    tmp_path: Path, compile_cache: Path
) -> None:
    manifest = write_wat_app(tmp_path, "web", body="answer is 41")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "answer is 41")
        await record_real_request(s, "web")
        same = await s.loop.timetravel.replay("web")
        assert same.replayed == 1 and same.differences == ()  # same build: nothing differs

        set_body(manifest, "answer is 42")
        await s.wait_body("web", "answer is 42")
        report = await s.loop.timetravel.replay("web")
        assert report.replayed == 1 and len(report.differences) == 1
        diff = report.differences[0]
        assert diff.recorded_status == diff.replayed_status == 200
        assert "-answer is 41" in diff.body_diff and "+answer is 42" in diff.body_diff
        assert diff.target.endswith("?q=1")
        assert s.store.state.apps["web"].replay == report  # what the dashboard panel shows

        await s.loop.timetravel.rollback("web")
        after = await s.loop.timetravel.replay("web")
        assert after.replayed == 1 and after.differences == ()


async def test_replay_after_every_deploy_when_configured(tmp_path: Path, compile_cache: Path) -> None:
    manifest = write_wat_app(tmp_path, "web", body="first")
    (tmp_path / "wasmdev.toml").write_text("[apps.web]\nreplay = true\n")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "first")
        await record_real_request(s, "web", "")
        set_body(manifest, "second")
        await s.wait(lambda st: st.apps["web"].replay is not None, "the replay after the deploy")
        report = s.store.state.apps["web"].replay
        assert report is not None and len(report.differences) == 1
        assert "+second" in report.differences[0].body_diff
        # What `wasmdev up --headless` prints: the summary and the diff, line by line.
        logged = [line.text.strip() for line in s.store.logs.tail(200) if line.app == "web"]
        assert any("1 differ" in text for text in logged)
        assert "-first" in logged and "+second" in logged


async def test_served_traffic_is_recorded_and_replayed(tmp_path: Path, compile_cache: Path) -> None:
    """Needs the serving side's recording (RequestRecorded for every real request)."""
    manifest = write_wat_app(tmp_path, "web", body="from build A")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "from build A")
        async with httpx.AsyncClient(timeout=10) as client:
            await client.get(s.url("web") + "?real=1")
            await client.get(s.url("web"), headers={REPLAY_HEADER: "1"})  # not real traffic
        await s.wait(
            lambda _st: any(e.query == "real=1" for e in s.store.exchanges.exchanges("web")),
            "the real request recorded by the server",
        )
        recorded = s.store.exchanges.exchanges("web")
        assert not any(REPLAY_HEADER in dict(e.headers) for e in recorded)  # replays are not traffic
        real = next(e for e in recorded if e.query == "real=1")
        assert real.status == 200 and b"from build A" in real.response_body
        set_body(manifest, "from build B")
        await s.wait_body("web", "from build B")
        report = await s.loop.timetravel.replay("web")
        assert report.differences and all("+from build B" in d.body_diff for d in report.differences)
        assert not any(REPLAY_HEADER in dict(e.headers) for e in s.store.exchanges.exchanges("web"))


async def test_the_load_tests_requests_appear_in_the_apps_records(
    tmp_path: Path, compile_cache: Path
) -> None:
    write_wat_app(tmp_path, "web", body="loaded")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "loaded")
        before = len(s.store.metrics.requests("web"))
        path = urlsplit(s.url("web")).path
        from devenv.control.messages import LoadCommand

        report = await s.loop.timetravel.load(
            LoadCommand(app="web", path=path, duration_s=30, connections=4, requests=60)
        )
        assert report.requests == 60 and report.errors == 0
        assert report.requests_per_second > 0 and 0 < report.p50_ms <= report.p95_ms <= report.p99_ms
        await s.wait(lambda _st: len(s.store.metrics.requests("web")) >= before + 60, "the load's records")
        assert s.store.state.apps["web"].load == report and not s.store.state.apps["web"].load_running


def test_diffs_mask_secrets_and_ignore_volatile_headers() -> None:
    changes = header_changes(
        [("Date", "Mon"), ("Set-Cookie", "a=1"), ("X-Kind", "old"), ("Content-Length", "3")],
        [("date", "Tue"), ("set-cookie", "a=22"), ("x-kind", "new"), ("content-length", "4")],
    )
    assert changes == (
        "- set-cookie: •••• (3 chars)",
        "+ set-cookie: •••• (4 chars)",
        "- x-kind: old",
        "+ x-kind: new",
    )
    assert body_diff(b"same", b"same") == ""
    assert body_diff(b"\x00\x01\x02", b"\x00\x09\x02\x03") == (
        "binary bodies differ: 3 bytes recorded, 4 replayed; first difference at byte 1"
    )


async def test_replay_and_load_resend_only_safe_methods_unless_asked(tmp_path: Path, compile_cache: Path) -> None:
    """A recorded POST would write to the app's real stores again: replay and load send GET,
    HEAD and OPTIONS only, say how many they left out, and send all with all_methods."""
    from devenv.control.messages import LoadCommand
    from devenv.engine.replay import format_report

    write_wat_app(tmp_path, "web", body="methods")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "methods")
        async with httpx.AsyncClient(timeout=10) as client:
            await client.post(s.url("web") + "?posted=1", content=b"x=1")
            await client.delete(s.url("web") + "?deleted=1")
            await client.get(s.url("web") + "?got=1")
        await s.wait(
            lambda _st: {e.method for e in s.store.exchanges.exchanges("web")} >= {"POST", "DELETE", "GET"},
            "the POST, DELETE and GET recorded",
        )
        before = len(s.store.metrics.requests("web"))
        safe = await s.loop.timetravel.replay("web")
        assert safe.replayed == 1 and safe.unsafe_skipped == 2
        assert "2 not sent (methods other than GET/HEAD/OPTIONS change state" in format_report(safe)[0]
        every = await s.loop.timetravel.replay("web", all_methods=True)
        assert every.replayed == 3 and every.unsafe_skipped == 0

        load = await s.loop.timetravel.load(LoadCommand(app="web", connections=1, requests=6))
        assert load.requests == 6 and "2 recorded POST/PUT/DELETE/PATCH… left out" in load.url
        await s.wait(lambda _st: len(s.store.metrics.requests("web")) >= before + 1 + 3 + 6, "the records")
        sent = [r.method for r in s.store.metrics.requests("web")][before:]
        assert sent.count("POST") == 1 and sent.count("DELETE") == 1  # the all-methods replay only


def test_load_latencies_are_kept_in_bounded_bins_within_one_percent() -> None:
    """Up to 10,000,000 requests: a fixed number of counters, and percentiles within 1% of the
    exact nearest-rank ones."""
    import math
    import random

    from devenv.engine.loadtest import LatencyHistogram
    from devenv.store.buffers import percentile

    rng = random.Random(7)
    values = [rng.lognormvariate(1.0, 1.2) for _ in range(50_000)] + [0.0, 2_000_000.0]
    histogram = LatencyHistogram()
    size = len(histogram.bins)
    for v in values:
        histogram.add(v)
    assert len(histogram.bins) == size < 3_000 and histogram.count == len(values)
    exact = sorted(values)
    for q in (50, 95, 99):
        assert math.isclose(histogram.percentile(q), percentile(exact, q), rel_tol=0.01)
    assert math.isnan(LatencyHistogram().percentile(50))


async def test_a_second_load_or_replay_of_an_app_is_refused_while_one_runs(
    tmp_path: Path, compile_cache: Path
) -> None:
    import asyncio

    import pytest

    from devenv.control.messages import LoadCommand
    from devenv.errors import WasmdevError

    write_wat_app(tmp_path, "web", body="busy")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("web", "busy")
        await record_real_request(s, "web")
        tt = s.loop.timetravel
        first = asyncio.ensure_future(tt.load(LoadCommand(app="web", path="/", duration_s=300, connections=1)))
        await s.wait(lambda st: st.apps["web"].load_running, "the first load test running")
        with pytest.raises(WasmdevError, match="app web: a load test is already running"):
            await tt.load(LoadCommand(app="web", path="/", duration_s=1, connections=1))
        assert s.store.state.apps["web"].load_running  # the refusal did not clear it
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await s.wait(lambda st: not st.apps["web"].load_running, "the first load test ended")
        results = await asyncio.gather(tt.replay("web"), tt.replay("web"), return_exceptions=True)
        assert results[0].replayed == 1  # type: ignore[union-attr]
        assert isinstance(results[1], WasmdevError) and "replay is already running" in results[1].what
        assert (await tt.replay("web")).replayed == 1  # and again once it ended
