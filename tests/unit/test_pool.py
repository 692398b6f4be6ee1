"""The local render pool with real worker processes: placement, failures, crash recovery."""

import asyncio
import math
from dataclasses import replace

import numpy as np
import pytest

from streamer.config import Settings
from streamer.errors import NotFound, NotReady, StreamerError, WorkerDied, error_class
from streamer.pool.front.local import LocalPool
from streamer.pool.wire import decode, encode, error_reply, job_from_message, job_message, reply_error
from streamer.render.base import RenderJob


def job(units: int = 5, template: str = "astronaut", session: str = "") -> RenderJob:
    t = np.arange(units * 640) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return RenderJob(template, np.arange(units), audio, 0, True, session_id=session)


@pytest.fixture
async def pool(tmp_path):
    pool = LocalPool(replace(Settings(), cache_dir=tmp_path), ["cpu", "cpu"])
    await pool.start()
    await pool.prepare("astronaut")
    yield pool
    await pool.close()


async def test_jobs_come_back_whole_and_concurrent_ones_spread(pool):
    for _ in range(3):
        crops = await pool.render(job())
        assert crops.shape == (5, 256, 256, 3) and crops.dtype == np.uint8
    # Concurrent windows are spread over both workers and each answer is its own.
    results = await asyncio.gather(*(pool.render(job(units)) for units in (3, 4, 5, 6)))
    assert [r.shape[0] for r in results] == [3, 4, 5, 6]
    assert sum(w["frames"] for w in pool.stats()) == 15 + 18
    assert all(w["jobs"] >= 1 for w in pool.stats())
    assert all(w["frames_per_s"] > 0 and w["calls"] >= 1 for w in pool.stats())
    capacity = pool.capacity()
    assert capacity.devices == 2 and capacity.frames_per_s == pytest.approx(sum(capacity.per_device), abs=0.2)


async def test_a_failed_job_keeps_its_error_class_and_the_worker_carries_on(pool):
    with pytest.raises(NotFound, match="unknown template"):
        await pool.render(job(template="nobody"))
    assert all(w["alive"] for w in pool.stats())
    assert sum(w["errors"] for w in pool.stats()) == 1
    assert (await pool.render(job())).shape[0] == 5


async def test_a_dead_worker_is_skipped_its_job_retried_and_it_restarts(pool):
    pool.workers[0]._process.kill()
    crops = await pool.render(job())  # retried on the other worker if it went to the dead one
    assert crops.shape[0] == 5
    await asyncio.gather(*pool._restarts)
    stats = pool.stats()
    assert stats[0]["restarts"] == 1 and stats[0]["alive"]
    assert (await asyncio.gather(*(pool.render(job()) for _ in range(2))))[0].shape[0] == 5


async def test_no_running_worker_is_one_503(pool):
    for worker in pool.workers:
        worker.stats.alive = False
    with pytest.raises(WorkerDied) as caught:
        await pool.render(job())
    assert caught.value.status == 503 and isinstance(caught.value, NotReady)
    with pytest.raises(WorkerDied):
        await pool.prepare("astronaut")
    for worker in pool.workers:
        worker.stats.alive = True


def test_wire_format_carries_arrays_and_refuses_objects():
    meta, arrays = decode(encode({"op": "x"}, {"a": np.arange(6, dtype=np.int16).reshape(2, 3)}))
    assert meta == {"op": "x"} and arrays["a"].tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(TypeError):
        encode({}, {"o": np.array([object()])})


def test_one_job_codec_both_ways():
    sent = replace(job(7, session="s1"), first_unit=2, final=False, due_in_s=0.25)
    back = job_from_message(*decode(encode(*job_message(sent, 0.2))))
    assert (back.template_id, back.first_unit, back.final, back.session_id) == ("astronaut", 2, False, "s1")
    assert back.due_in_s == pytest.approx(0.2)
    assert back.positions.tolist() == sent.positions.tolist() and np.array_equal(back.audio, sent.audio)
    never = job_from_message(*decode(encode(*job_message(job(), math.inf))))
    assert never.due_in_s == math.inf


def test_error_classes_survive_the_pipe_by_name_only():
    reply = decode(encode(error_reply(NotFound("no such template"))))[0]
    assert type(reply_error(reply, "ctx")) is NotFound and "no such template" in str(reply_error(reply, "ctx"))
    other = decode(encode(error_reply(ValueError("boom"))))[0]
    assert type(reply_error(other, "ctx")) is StreamerError and "ValueError: boom" in str(reply_error(other, "ctx"))
    assert error_class("Exception") is StreamerError and error_class("os") is StreamerError
