"""A session served by render actors of a local Ray instance: welcome, speech in sync, and an
actor killed by its PID mid-stream whose later windows render after Ray restarts it."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from streamer.config import Settings
from streamer.headless.client import Client
from streamer.headless.measure import av_offset_ms
from streamer.server.keys import SESSIONS
from tests.integration.conftest import live_server

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

TEMPLATE = "astronaut"


@pytest.fixture(scope="module")
def ray_server(cache_dir):
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    settings = Settings(
        cache_dir=cache_dir,
        renderer="sim",
        devices=("sim:0", "sim:1"),
        pool="ray",
        sim_fixed_ms=40.0,
        sim_per_frame_ms=2.0,
        max_sessions=2,
    )
    try:
        with live_server(settings) as live:
            yield live
    finally:
        ray.shutdown()


async def test_a_session_on_ray_speaks_in_sync_and_survives_a_killed_actor(ray_server, speech_wav):
    pool = ray_server.app[SESSIONS].pool
    assert type(pool).__name__ == "RayPool" and len(pool.workers) == 2
    client = Client(ray_server.url)
    await client.connect(TEMPLATE)
    try:
        await client.wait_event("welcome_ended", timeout=60)
        r = client.received
        reply, sent = await client.speak(speech_wav.read_bytes(), "audio/wav")
        await client.wait_event("speaking_started", reply["utterance_id"], timeout=20)
        victim = pool.workers[0]
        pid = victim.pid
        os.kill(pid, signal.SIGKILL)  # mid-stream
        await client.wait_event("speaking_ended", reply["utterance_id"], timeout=60)
        ended = time.monotonic()
        idle = [f for t, f in zip(r.video_times, r.frames, strict=True) if t < sent][-1].astype(np.int16)
        offset = av_offset_ms(r, sent, ended + 0.3, idle)
        assert offset is not None and abs(offset) <= 80  # in sync
        for _ in range(600):  # until Ray has restarted it and it answered (watching frames)
            if victim.alive and victim.stats.restarts:
                break
            await client.wait_frames(5)
        assert victim.alive and victim.pid != pid
        before = victim.stats.jobs
        reply, _ = await client.speak(speech_wav.read_bytes(), "audio/wav")
        await client.wait_event("speaking_ended", reply["utterance_id"], timeout=60)
        assert victim.stats.jobs > before  # later windows render on the restarted actor
        state = await client.state()
        assert state["state"] == "idle"
    finally:
        await client.close()
