"""The shared render actor without Ray: the class itself, on a sim device, fed by two fronts
(each numbering its own jobs), with leases that run out."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from streamer.config import Settings
from streamer.pool.front.ray_pool import actor_settings
from streamer.pool.wire import decode, encode, job_message
from streamer.pool.worker import ray_actor
from streamer.pool.worker.ray_actor import RenderActor
from streamer.render.base import RenderJob


def message(job_id: int, session: str, units: int, due: float) -> bytes:
    t = np.arange((units + 2) * 640) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    job = RenderJob("astronaut", np.arange(units), audio, 0, False, session_id=session, due_in_s=due)
    meta, arrays = job_message(job, due)
    return encode({**meta, "id": job_id}, arrays)


async def replies(actor: RenderActor, front: str, payload: bytes) -> list[dict]:
    return [decode(data)[0] async for data in actor.call(front, payload)]


@pytest.fixture
async def actor(tmp_path):
    settings = replace(Settings(), renderer="sim", cache_dir=tmp_path, sim_fixed_ms=30.0, sim_per_frame_ms=1.0)
    actor = RenderActor(0, "sim:0", actor_settings(settings))
    prepared = await replies(actor, "setup", encode({"op": "prepare", "id": 0, "template_id": "astronaut"}))
    assert prepared[-1]["ok"]
    yield actor
    actor.server.queue.close()


async def test_two_fronts_with_the_same_job_ids_each_get_their_own_answers_started_first(actor):
    a, b = (asyncio.create_task(replies(actor, front, message(7, f"s-{front}", 5, 1.0))) for front in "ab")
    for got in (await a, await b):
        assert [m["type"] for m in got] == ["started", "done"]
        assert got[0]["ids"] == [7] and got[1]["id"] == 7 and got[1]["ok"]


async def test_an_urgent_job_of_one_front_goes_ahead_of_another_fronts_earlier_uploads(actor):
    uploads = [asyncio.create_task(replies(actor, "a", message(i, "upload", 32, 30.0))) for i in range(4)]
    while actor.server.queue.depth() < 3:  # the first upload renders; the others wait
        await asyncio.sleep(0)
    first = await replies(actor, "b", message(0, "live", 5, 0.0))
    assert first[-1]["ok"]
    report = actor.report()
    assert report["ahead_by_front"] == {"b": 1}
    assert report["jobs_by_front"]["a"] >= 2  # b's window finished while a's uploads waited
    await asyncio.gather(*uploads)
    assert "a" not in actor.report()["ahead_by_front"]


async def test_a_front_whose_lease_runs_out_has_its_jobs_cancelled_and_its_load_forgotten(actor, monkeypatch):
    monkeypatch.setattr(ray_actor, "LEASE_S", 0.05)
    monkeypatch.setattr(ray_actor, "LEASE_TTL_S", 0.2)
    await actor.lease("b", {"open": 1, "speaking": 1})
    actor._fronts["b"].seen += 3600  # b renews (its heartbeat is not what is tested here)
    report = await actor.lease("a", {"open": 2, "speaking": 1})
    assert report["fronts"]["a"] == {"open": 2, "speaking": 1} and report["fronts"]["b"] == {"open": 1, "speaking": 1}
    queued = [asyncio.create_task(replies(actor, "a", message(i, "gone", 32, 30.0))) for i in range(30)]
    done = [await task for task in queued]  # a never renews: what it had queued is cancelled
    assert any(got[-1].get("error_class") == "Cancelled" for got in done)
    assert all(got[-1]["id"] == i for i, got in enumerate(done))
    report = actor.report()
    assert "a" not in report["fronts"] and "a" not in report["jobs_by_front"] and "b" in report["fronts"]


async def test_cancel_by_session_and_leave_end_the_calls_of_queued_jobs(actor):
    calls = [asyncio.create_task(replies(actor, "a", message(i, f"s{i % 2}", 32, 30.0))) for i in range(6)]
    while actor.server.queue.depth() < 5:
        await asyncio.sleep(0)
    actor.cancel("s1")
    actor.leave("a")
    done = [await task for task in calls]
    assert sum(got[-1].get("error_class") == "Cancelled" for got in done) >= 4
    assert actor.report()["jobs_by_front"] == {}
