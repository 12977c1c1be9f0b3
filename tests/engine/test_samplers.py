"""Samplers against the real local target: resource samples from usage() deltas, HTTP probes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from devenv.engine.samplers import PROBE_FAILED_STATUS, Prober, ResourceSampler
from devenv.model import AppStatus
from devenv.store import actions as a
from tests.engine.session import dev_session
from tests.engine.wat_app import write_wat_app


async def test_resource_samples_turn_counters_into_rates(tmp_path: Path, compile_cache: Path) -> None:
    write_wat_app(tmp_path, "busy", body="busy")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait_body("busy", "busy")
        sampler = ResourceSampler(s.store, s.loop.target)
        assert await sampler.sample_once() == []  # the first reading only sets the baseline
        before = s.loop.target.usage("busy").requests_total
        async with httpx.AsyncClient() as client:
            for _ in range(20):
                assert (await client.get(s.url("busy"))).status_code == 200
        # Serving processes report their requests in batches, a few milliseconds after answering.
        await s.wait(lambda _st: s.loop.target.usage("busy").requests_total >= before + 20, "20 requests counted")
        samples = await sampler.sample_once()
        assert [x.app for x in samples] == ["busy"]
        sample = samples[0]
        assert sample.requests_per_second > 0
        assert sample.cpu_percent is not None and sample.cpu_percent > 0
        assert sample.memory_bytes == 65536  # one wasm page: the WAT module's whole memory
        assert s.store.metrics.samples("busy")[-1] == sample


async def test_a_target_without_usage_is_skipped(tmp_path: Path) -> None:
    from devenv.store.store import Store

    class NoUsage:
        name = "cluster"

        def usage(self, app: str):  # noqa: ANN201 - the shape of a target that knows no app
            raise KeyError(app)

    store = Store()
    assert await ResourceSampler(store, NoUsage()).sample_once() == []


async def test_probes_are_real_requests_recorded_as_probes(tmp_path: Path, compile_cache: Path) -> None:
    write_wat_app(tmp_path, "probed", body="probed")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait(lambda st: st.apps["probed"].status is AppStatus.SERVING, "serving")
        task = asyncio.create_task(Prober(s.store, interval_s=0.05).run())
        try:
            await s.wait(
                lambda _st: any(r.probe for r in s.store.metrics.requests("probed")), "a probe record"
            )
        finally:
            task.cancel()
        probe = next(r for r in s.store.metrics.requests("probed") if r.probe)
        assert probe.status == 200 and probe.method == "GET" and probe.path == "/probed"
        assert probe.latency_ms > 0
        # The target saw the probe as a request too: it was real HTTP, not a simulation. (Its
        # record may come a few milliseconds later, batched by a serving process.)
        await s.wait(
            lambda _st: any(isinstance(x, a.RequestServed) and not x.record.probe for x in s.actions),
            "the target's own record of the probe",
        )


async def test_a_probe_that_gets_no_answer_is_an_error_record(tmp_path: Path, compile_cache: Path) -> None:
    write_wat_app(tmp_path, "gone", body="gone")
    async with dev_session(tmp_path, compile_cache) as s:
        await s.wait(lambda st: st.apps["gone"].status is AppStatus.SERVING, "serving")
        url = s.url("gone")
        await s.loop.target.remove("gone")  # the port closes; the store still lists the URL
        import aiohttp

        async with aiohttp.ClientSession() as session:
            await Prober(s.store, 1.0)._probe(session, "gone", url)
        record = s.store.metrics.requests("gone")[-1]
        assert record.probe and record.status == PROBE_FAILED_STATUS
