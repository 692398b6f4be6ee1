"""Scheduling inside the workers. The queue's decisions (earliest deadline first, batching across
sessions, splitting, cancel) on a fake clock; the worker loop driven by messages, in process;
then sim devices in real worker processes over real pipes: results, cancel, compute-only
timeouts, placement. Nothing here waits on the wall clock or asserts an order that load could
change."""

import asyncio
import threading
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from streamer.config import Settings
from streamer.errors import Cancelled, RenderTimeout
from streamer.pool.costs import low_water_units
from streamer.pool.front.local import LocalPool
from streamer.pool.wire import job_message
from streamer.pool.worker.loop import RenderLoop
from streamer.pool.worker.scheduler import Entry, JobQueue
from streamer.render.base import RenderJob


def job(units: int, session: str = "s", template: str = "astronaut", due: float = float("inf")) -> RenderJob:
    t = np.arange(units * 640) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return RenderJob(template, np.arange(units), audio, 0, False, session_id=session, due_in_s=due)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sim_cost(frames: int) -> float:
    """The sim device these tests use: 100 ms a call and 2 ms a frame."""
    return 0.1 + 0.002 * frames


def queue(max_frames: int = 32, batching: bool = True) -> tuple[JobQueue, FakeClock]:
    clock = FakeClock()
    return JobQueue(max_frames, sim_cost, batching, clock=clock), clock


def ids(batch: list[Entry] | None) -> list[int]:
    assert batch is not None
    return [e.id for e in batch]


# --- the queue, on a fake clock -----------------------------------------------------------


def test_a_first_window_goes_ahead_of_queued_uploads():
    q, clock = queue()
    for i in range(4):
        q.put(i, job(30, session=f"u{i}"))  # never due
    assert ids(q.take())[0] == 0  # the worker starts on the first upload
    clock.now = 0.05
    q.put(9, job(5, session="live", due=0.3))
    assert ids(q.take())[0] == 9  # next: the first window, not the second upload


def test_due_jobs_of_several_sessions_and_templates_share_one_call():
    q, _ = queue()
    for i in range(6):
        q.put(i, job(5, session=f"s{i}", template=("astronaut", "astronaut_loop")[i % 2], due=1.0))
    batch = q.take()
    assert ids(batch) == list(range(6))  # 30 frames in one 0.16 s call, on time for all
    assert batch is not None and {e.job.template_id for e in batch if e.job} == {"astronaut", "astronaut_loop"}


def test_a_job_joins_a_call_only_while_the_calls_first_deadline_holds():
    q, clock = queue()
    q.put(0, job(5, session="a", due=0.3))
    q.put(1, job(20, session="b", due=5.0))
    assert ids(q.take()) == [0, 1]  # 25 frames take 0.15 s: the first window is still on time
    q.put(2, job(5, session="a", due=0.3))
    q.put(3, job(20, session="b", due=5.0))
    clock.now = 0.2  # the worker was busy: 0.1 s left, and 25 frames would make it late
    assert ids(q.take()) == [2]
    assert ids(q.take()) == [3]


def test_a_job_due_too_soon_to_wait_for_the_next_call_joins_a_full_one():
    q, _ = queue()
    q.put(0, job(5, session="a", due=0.12))
    q.put(1, job(5, session="b", due=0.2))
    # Together they miss 0.12 by 0.01 s; alone, the second would wait 0.11 s and take 0.11 s.
    assert ids(q.take()) == [0, 1]


def test_without_batching_each_call_holds_one_job_whole():
    q, _ = queue(max_frames=8, batching=False)
    q.put(0, job(20, session="a", due=1.0))
    q.put(1, job(5, session="b", due=2.0))
    first, second = q.take(), q.take()
    assert ids(first) == [0] and first is not None and first[0].frames == 20
    assert ids(second) == [1]


def test_cancel_drops_a_sessions_queued_jobs_and_they_never_come_out():
    q, _ = queue(max_frames=8)
    for i in range(2):
        q.put(i, job(8, session="other"))
    for i in range(2, 6):
        q.put(i, job(8, session="me"))
    assert sorted(q.cancel("me")) == [2, 3, 4, 5]
    assert q.depth() == 2
    assert ids(q.take()) + ids(q.take()) == [0, 1]
    q.close()
    assert q.take() is None


def test_a_job_longer_than_a_call_is_split_and_an_urgent_job_goes_between_its_parts():
    q, clock = queue(max_frames=8)
    q.put(0, job(20, session="upload"))
    head = q.take()
    assert head is not None and [(e.id, e.offset, e.frames) for e in head] == [(0, 0, 8)]
    clock.now = 0.05
    q.put(1, job(3, session="live", due=0.2))
    between = q.take()
    assert between is not None and between[0].id == 1  # ahead of the upload's second part
    parts = [(e.offset, e.frames) for e in between if e.id == 0]
    while batch := (q.take() if q.depth() else None):
        parts += [(e.offset, e.frames) for e in batch]
    assert sum(f for _, f in parts) == 12 and all(f <= 8 for _, f in parts)
    assert [o for o, _ in parts] == sorted(o for o, _ in parts)  # in order, none twice


def test_control_work_goes_ahead_of_every_render():
    q, _ = queue()
    q.put(0, job(5, session="a", due=0.0))
    q.put_control(1, {"op": "prepare", "template_id": "astronaut"})
    control = q.take()
    assert control is not None and ids(control) == [1] and control[0].job is None
    assert ids(q.take()) == [0]


# --- the worker loop, driven by messages ----------------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sim-cache")


def sim_settings(cache, **settings: Any) -> Settings:
    values = {"renderer": "sim", "cache_dir": cache, "sim_fixed_ms": 100.0, "sim_per_frame_ms": 2.0, **settings}
    return replace(Settings(), **values)


def run_until_answered(server: RenderLoop, expected: int) -> list[dict[str, Any]]:
    """Run the worker loop on a thread until `expected` jobs are answered; their replies."""
    answers: list[dict[str, Any]] = []

    def send(meta: dict[str, Any], arrays: dict[str, np.ndarray] | None) -> None:
        if meta["type"] == "done":
            answers.append({**meta, "crops": None if arrays is None else arrays["crops"]})
            if len(answers) == expected:
                server.queue.close()

    thread = threading.Thread(target=server.run, args=(send,))
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), answers
    return answers


def submit(server: RenderLoop, job_id: int, j: RenderJob) -> None:
    meta, arrays = job_message(j, j.due_in_s)
    server.submit({**meta, "id": job_id}, arrays)


def test_the_worker_renders_jobs_queued_together_in_one_call_as_each_alone(cache):
    server = RenderLoop(sim_settings(cache), "sim:0")
    jobs = [job(5, session=f"s{i}", template=("astronaut", "astronaut_loop")[i % 2], due=1.0) for i in range(6)]
    for i, j in enumerate(jobs):
        submit(server, i, j)
    together = run_until_answered(server, 6)
    assert server.counters.batch_jobs == {"6": 1} and server.counters.calls == 1
    assert sorted(a["id"] for a in together) == list(range(6)) and all(a["ok"] for a in together)
    server.queue = JobQueue(32, server.curve.seconds)
    submit(server, 7, jobs[1])
    (alone,) = run_until_answered(server, 1)
    assert np.array_equal(alone["crops"], next(a["crops"] for a in together if a["id"] == 1))


def test_a_cancelled_sessions_queued_jobs_never_render(cache):
    server = RenderLoop(sim_settings(cache, batch_size=8), "sim:0")
    for i in range(2):
        submit(server, i, job(8, session="other"))
    for i in range(2, 6):
        submit(server, i, job(8, session="me"))
    assert server.cancel("me") == {2, 3, 4, 5}
    answers = run_until_answered(server, 2)
    assert sorted(a["id"] for a in answers) == [0, 1] and [a["crops"].shape[0] for a in answers] == [8, 8]
    assert server.counters.frames == 16 and server.counters.cancelled == 4


# --- sim devices in real worker processes ---------------------------------------------------


async def sim_pool(cache, devices: int = 1, **settings: Any) -> LocalPool:
    pool = LocalPool(sim_settings(cache, **settings), [f"sim:{i}" for i in range(devices)])
    await pool.start()
    await pool.prepare("astronaut")
    return pool


async def until(condition) -> None:
    """Yield to the loop until `condition()` holds (the front's own bookkeeping, no wall clock)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def test_jobs_of_several_sessions_and_templates_come_back_whole(cache):
    pool = await sim_pool(cache, batch_size=32, sim_fixed_ms=150.0)
    await pool.prepare("astronaut_loop")
    try:
        jobs = [job(5, session=f"s{i}", template=("astronaut", "astronaut_loop")[i % 2], due=1.0) for i in range(6)]
        results = await asyncio.gather(*(pool.render(j) for j in jobs))
        assert [r.shape for r in results] == [(5, 256, 256, 3)] * 6
        assert pool.stats()[0]["jobs"] >= 6
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


async def test_cancel_fails_a_sessions_jobs_at_once_and_others_finish(cache):
    pool = await sim_pool(cache, batch_size=8, sim_fixed_ms=200.0)
    try:
        theirs = [asyncio.create_task(pool.render(job(8, session="other"))) for _ in range(2)]
        mine = [asyncio.create_task(pool.render(job(8, session="me"))) for _ in range(4)]
        await until(lambda: pool.workers[0].stats.in_flight == 6)  # all six sent
        pool.cancel("me")
        for task in mine:
            with pytest.raises(Cancelled):
                await task  # raised at once, without waiting for the worker
        assert not any(t.done() and t.exception() is not None for t in theirs)
        assert [r.shape[0] for r in await asyncio.gather(*theirs)] == [8, 8]
        assert pool.stats()[0]["in_flight"] == 0
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
        # An upload keeps worker A busy; a live window goes to the idle one; once both are idle,
        # concurrent windows of one utterance spread over both.
        upload = asyncio.create_task(pool.render(job(60, session="up")))
        await until(lambda: any(w.stats.in_flight for w in pool.workers))
        busy = next(w for w in pool.workers if w.stats.in_flight)
        idle = next(w for w in pool.workers if w is not busy)
        await pool.render(job(5, session="live", due=0.3))
        assert idle.stats.jobs == 1
        await upload
        busy_jobs = busy.stats.jobs
        await asyncio.gather(*(pool.render(job(5, session="live", due=0.5)) for _ in range(2)))
        assert idle.stats.jobs == 2 and busy.stats.jobs == busy_jobs + 1
    finally:
        await pool.close()


async def test_a_job_longer_than_a_call_is_rendered_in_parts_and_comes_back_whole(cache):
    pool = await sim_pool(cache, batch_size=8, sim_fixed_ms=50.0)
    try:
        long, short = job(20, session="upload"), job(3, session="live", due=0.2)
        upload = asyncio.create_task(pool.render(long))
        first = await pool.render(short)
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
