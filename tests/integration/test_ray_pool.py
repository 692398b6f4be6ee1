"""The Ray backend on a local Ray instance (separate actor processes, not local mode)."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace

import numpy as np
import pytest

from streamer.config import Settings
from streamer.errors import Cancelled, NotFound
from streamer.render.base import RenderJob

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

from streamer.pool.front.ray_pool import RayPool  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def job(units: int, session: str = "s", first: int = 0, due: float = float("inf")) -> RenderJob:
    t = np.arange((first + units) * 640) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return RenderJob(
        "astronaut", np.arange(first, first + units), audio, first, False, session_id=session, due_in_s=due
    )


@pytest.fixture
async def pool(cluster, tmp_path):
    settings = replace(
        Settings(),
        renderer="sim",
        cache_dir=tmp_path,
        sim_fixed_ms=50.0,
        sim_per_frame_ms=2.0,
        pool="ray",
        batch_size=16,
    )
    pool = RayPool(settings, ["sim:0", "sim:1"])
    await pool.start()
    await pool.prepare("astronaut")
    yield pool
    await pool.close()


async def test_actors_render_spread_batch_cancel_and_keep_error_classes(pool):
    assert pool.renderer == "sim" and pool.capacity().devices == 2
    results = await asyncio.gather(*(pool.render(job(5, session=f"s{i}", due=0.5)) for i in range(6)))
    assert [r.shape for r in results] == [(5, 256, 256, 3)] * 6
    assert all(w["jobs"] >= 1 for w in pool.stats())
    with pytest.raises(NotFound):
        await pool.render(replace(job(2), template_id="nobody"))
    mine = [asyncio.create_task(pool.render(job(16, session="me"))) for _ in range(6)]
    while sum(w.stats.in_flight for w in pool.workers) < len(mine):  # until all six are sent
        await asyncio.sleep(0)
    pool.cancel("me")
    for task in mine:
        with pytest.raises(Cancelled):
            await task


async def test_an_actor_killed_by_pid_mid_stream_restarts_and_renders_later_windows(pool):
    victim = pool.workers[0]
    pid = victim.pid
    rendered = []
    for k in range(12):
        if k == 3:
            os.kill(pid, signal.SIGKILL)
        crops = await pool.render(job(5, session="live", first=5 * k, due=0.2))
        rendered.append(crops.shape[0])
    assert rendered == [5] * 12  # every window rendered, retried on the other actor if need be
    await victim.restarted(1, timeout=60)  # Ray restarts the actor; it answers again
    assert victim.alive and victim.stats.restarts == 1 and victim.pid != pid
    before = victim.stats.jobs
    await asyncio.gather(*(pool.render(job(5, session=f"after{i}", due=0.3)) for i in range(4)))
    assert victim.stats.jobs > before  # its later windows render on the restarted actor
