"""The local render pool with real worker processes: turns, failures, crash recovery."""

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from streamer.config import Settings
from streamer.errors import StreamerError
from streamer.pool.local import LocalPool
from streamer.pool.wire import decode, encode
from streamer.render.base import RenderJob


def job(units: int = 5, template: str = "astronaut") -> RenderJob:
    t = np.arange(units * 640) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return RenderJob(template, np.arange(units), audio, 0, True)


@pytest.fixture
async def pool(tmp_path):
    pool = LocalPool(replace(Settings(), cache_dir=tmp_path), ["cpu", "cpu"])
    await pool.start()
    await pool.prepare("astronaut")
    yield pool
    await pool.close()


async def test_jobs_take_turns_and_come_back_whole(pool):
    for _ in range(4):
        crops = await pool.render(job())
        assert crops.shape == (5, 256, 256, 3) and crops.dtype == np.uint8
    assert [w["jobs"] for w in pool.stats()] == [2, 2]
    # Concurrent windows are spread over both workers and each answer is its own.
    results = await asyncio.gather(*(pool.render(job(units)) for units in (3, 4, 5, 6)))
    assert [r.shape[0] for r in results] == [3, 4, 5, 6]
    assert sum(w["frames"] for w in pool.stats()) == 20 + 18
    assert all(w["jobs"] >= 3 for w in pool.stats())


async def test_a_failed_job_is_an_error_and_the_worker_carries_on(pool):
    with pytest.raises(StreamerError, match="unknown template"):
        await pool.render(job(template="nobody"))
    assert all(w["alive"] for w in pool.stats())
    assert (await pool.render(job())).shape[0] == 5


async def test_a_dead_worker_is_skipped_its_job_retried_and_it_restarts(pool):
    pool.workers[0]._process.kill()
    crops = await pool.render(job())  # retried on the other worker if it went to the dead one
    assert crops.shape[0] == 5
    await asyncio.gather(*pool._restarts)
    stats = pool.stats()
    assert stats[0]["restarts"] == 1 and stats[0]["alive"]
    assert (await asyncio.gather(*(pool.render(job()) for _ in range(2))))[0].shape[0] == 5


def test_wire_format_carries_arrays_and_refuses_objects():
    meta, arrays = decode(encode({"op": "x"}, {"a": np.arange(6, dtype=np.int16).reshape(2, 3)}))
    assert meta == {"op": "x"} and arrays["a"].tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(TypeError):
        encode({}, {"o": np.array([object()])})
