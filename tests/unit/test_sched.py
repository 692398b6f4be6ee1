"""Scheduling inside the workers, with sim devices in real worker processes over real pipes:
earliest deadline first, batching across sessions, cancel, compute-only timeouts, placement."""

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from streamer.config import Settings
from streamer.errors import Cancelled, RenderTimeout
from streamer.pool.costs import low_water_units
from streamer.pool.local import LocalPool
from streamer.render.base import RenderJob


def job(units: int, session: str = "s", template: str = "astronaut", due: float = float("inf")) -> RenderJob:
    t = np.arange(units * 640) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return RenderJob(template, np.arange(units), audio, 0, False, session_id=session, due_in_s=due)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sim-cache")


async def sim_pool(cache, devices: int = 1, **settings) -> LocalPool:
    values = {"renderer": "sim", "cache_dir": cache, "sim_fixed_ms": 100.0, "sim_per_frame_ms": 2.0, **settings}
    pool = LocalPool(replace(Settings(), **values), [f"sim:{i}" for i in range(devices)])
    await pool.start()
    await pool.prepare("astronaut")
    return pool


async def finish_order(pool: LocalPool, jobs: dict[str, RenderJob], gap_s: float = 0.0) -> list[str]:
    """Names of `jobs` in the order their renders complete (sent in dict order)."""
    done: list[str] = []

    async def one(name: str, j: RenderJob) -> None:
        await pool.render(j)
        done.append(name)

    tasks = []
    for name, j in jobs.items():
        tasks.append(asyncio.create_task(one(name, j)))
        await asyncio.sleep(gap_s)  # let it reach the worker before the next one
    await asyncio.gather(*tasks)
    return done


async def test_a_first_window_goes_ahead_of_long_uploads_within_one_call(cache):
    pool = await sim_pool(cache, batch_size=32)
    try:
        uploads = {f"upload{i}": job(30, session=f"u{i}") for i in range(4)}
        first = {"first": job(5, session="live", due=0.3)}
        order = await finish_order(pool, {**uploads, **first}, gap_s=0.02)
        # The first upload was already rendering; the first window is next, not fifth.
        assert order.index("first") <= 1, order
        stats = pool.stats()[0]
        assert stats["jobs"] == 5 and stats["deadline_misses"] <= 1
    finally:
        await pool.close()


async def test_due_jobs_of_several_sessions_and_templates_share_one_call(cache):
    pool = await sim_pool(cache, batch_size=32, sim_fixed_ms=150.0)
    await pool.prepare("astronaut_loop")
    try:
        jobs = [job(5, session=f"s{i}", template=("astronaut", "astronaut_loop")[i % 2], due=1.0) for i in range(6)]
        results = await asyncio.gather(*(pool.render(j) for j in jobs))
        assert [r.shape for r in results] == [(5, 256, 256, 3)] * 6
        stats = pool.stats()[0]
        held = {int(k): v for k, v in stats["batch_jobs"].items()}
        assert max(held) >= 2, held  # at least one call held jobs of several sessions
        assert stats["calls"] < 6 + 2  # fewer model calls than jobs (+2: prepare's welcome renders)
        alone = await pool.render(jobs[1])  # the same window rendered on its own looks the same
        assert np.array_equal(alone, results[1])
    finally:
        await pool.close()


async def test_without_batching_each_call_holds_one_job(cache):
    pool = await sim_pool(cache, batch_across_jobs=False)
    try:
        await asyncio.gather(*(pool.render(job(5, session=f"s{i}", due=1.0)) for i in range(4)))
        assert set(pool.stats()[0]["batch_jobs"]) == {"1"}
    finally:
        await pool.close()


async def test_cancel_drops_a_sessions_queued_jobs_at_once_and_they_never_render(cache):
    pool = await sim_pool(cache, batch_size=8, sim_fixed_ms=200.0)
    try:
        theirs = [asyncio.create_task(pool.render(job(8, session="other"))) for _ in range(2)]
        mine = [asyncio.create_task(pool.render(job(8, session="me"))) for _ in range(4)]
        await asyncio.sleep(0.1)  # all sent; the worker renders the first of "other"
        pool.cancel("me")
        for task in mine:
            with pytest.raises(Cancelled):
                await task  # raised at once, without waiting for the worker
        assert all(t.done() is False or t.exception() is None for t in theirs)
        assert [r.shape[0] for r in await asyncio.gather(*theirs)] == [8, 8]
        stats = pool.stats()[0]
        assert stats["frames"] == 16 and stats["cancelled"] == 4 and stats["in_flight"] == 0
    finally:
        await pool.close()


async def test_the_timeout_counts_compute_only_and_a_timed_out_job_is_not_retried(cache):
    pool = await sim_pool(cache, devices=2, render_timeout_s=1.0, sim_fixed_ms=300.0, batch_size=8)
    try:
        # Six 0.3 s calls on two devices queue for longer than the timeout: none times out.
        await asyncio.gather(*(pool.render(job(8, session=f"s{i}")) for i in range(6)))
        assert sum(w["timeouts"] for w in pool.stats()) == 0
        # 400 frames × 2 ms + 4 s of fixed cost: far over 1 s of compute. Failed, not retried.
        with pytest.raises(RenderTimeout):
            await pool.render(job(400, session="long"))
        stats = pool.stats()
        assert sum(w["timeouts"] for w in stats) == 1
        assert sum(w["frames"] for w in stats) == 48
    finally:
        await pool.close()


async def test_a_window_goes_to_the_worker_that_finishes_it_first(cache):
    pool = await sim_pool(cache, devices=2)
    try:
        # An upload keeps worker A busy; both windows of a live utterance go to the idle one
        # only if it is faster there; the first goes to B, the second to whichever is free first.
        upload = asyncio.create_task(pool.render(job(60, session="up")))
        await asyncio.sleep(0.05)
        busy = next(w for w in pool.workers if w.stats.in_flight)
        await pool.render(job(5, session="live", due=0.3))
        idle = next(w for w in pool.workers if w is not busy)
        assert idle.stats.jobs == 1 and busy.stats.jobs == 0
        await upload
        # Concurrent windows of one utterance spread over both idle workers.
        await asyncio.gather(*(pool.render(job(5, session="live", due=0.5)) for _ in range(2)))
        assert idle.stats.jobs == 2 and busy.stats.jobs == 2
    finally:
        await pool.close()


async def test_a_job_longer_than_a_call_is_rendered_in_parts_and_comes_back_whole(cache):
    pool = await sim_pool(cache, batch_size=8, sim_fixed_ms=50.0)
    try:
        long, short = job(20, session="upload"), job(3, session="live", due=0.2)
        upload = asyncio.create_task(pool.render(long))
        await asyncio.sleep(0.02)
        first = await pool.render(short)  # goes between the upload's parts
        crops = await upload
        assert crops.shape[0] == 20 and first.shape[0] == 3
        alone = await pool.render(replace(long, session_id="again"))
        assert np.array_equal(crops, alone)
        stats = pool.stats()[0]
        assert int(max(stats["batch_frames"], key=lambda k: float(k))) <= 8  # no call over 8 frames
    finally:
        await pool.close()


def test_the_live_stream_low_water_is_four_full_batch_calls_of_the_slowest_running_device():
    slow = {"alive": True, "call_ms": 200 + 32 * 6}  # the sim default: 392 ms a full call
    fast = {"alive": True, "call_ms": 45.0}
    dead = {"alive": False, "call_ms": 5000.0}
    assert low_water_units([fast, slow, dead]) == 40  # 4 × 0.392 s × 25 fps, rounded up
    assert low_water_units([fast]) == 5
    assert low_water_units([dead]) == low_water_units([{"alive": True}]) == 0  # unknown: the stream's own 4
