"""Admission from the measured capacity: pure decisions, capacity measured on a sim device whose
calls take exactly their cost (a fake clock), then measured by real sim workers."""

from dataclasses import replace

import pytest

from streamer.config import Settings
from streamer.errors import Busy
from streamer.pool.base import Capacity
from streamer.pool.costs import CostCurve, measure
from streamer.pool.front.admission import Load, admit, decide
from streamer.pool.front.local import LocalPool
from streamer.render.sim import SimRenderer


def capacity(fps: float, devices: int = 1) -> Capacity:
    return Capacity(fps * devices, devices, (fps,) * devices)


def admitted(cap: Capacity, threshold: float = 0.8, share: float = 1.0) -> int:
    """How many sessions open one after the other before the first refusal."""
    n = 0
    while decide(cap, Load(n, 0), threshold, share).admit:
        n += 1
    return n


def test_sessions_fit_the_budget_at_their_speaking_share():
    assert admitted(capacity(30.0)) == 1  # MuseTalk near 30 fps unbatched: one per GPU
    assert admitted(capacity(30.0, devices=4)) == 4
    assert admitted(capacity(2.0)) == 1  # slower than real time: the first one still opens
    assert admitted(capacity(81.6)) == 3  # sim 200 ms + 6 ms/frame, batches of 32
    assert admitted(capacity(100.0)) == 3  # the fourth would load it to 100 %
    assert admitted(capacity(100.0), share=0.5) == 7
    assert not decide(capacity(2.0), Load(0, 1), 0.8, 1.0).admit
    assert decide(capacity(81.6), Load(1, 0), 0.8, 1.0).sessions == 3


def test_more_speaking_than_planned_counts_in_full():
    cap = capacity(100.0)
    assert decide(cap, Load(4, 0), 0.8, 0.5).admit
    assert not decide(cap, Load(4, 4), 0.8, 0.5).admit


def test_a_refusal_is_busy_with_retry_after_and_a_sentence():
    with pytest.raises(Busy) as refused:
        admit(capacity(100.0), Load(3, 1), 0.8, 1.0)
    assert refused.value.status == 429 and refused.value.retry_after_s > 0
    assert "at capacity" in str(refused.value) and "3 are open" in str(refused.value)
    assert admit(capacity(100.0), Load(2, 0), 0.8, 1.0).sessions == 3


def test_the_curve_fits_the_timed_calls():
    curve = CostCurve.fit({1: 0.206, 8: 0.248, 32: 0.392}, 32)
    assert curve.fixed_s == pytest.approx(0.2, abs=1e-3) and curve.per_frame_s == pytest.approx(0.006, abs=1e-4)
    assert curve.frames_per_s == pytest.approx(32 / 0.392, rel=0.01)
    assert curve.seconds(64) == pytest.approx(2 * 0.2 + 64 * 0.006, rel=0.01)


class SimTime:
    """A clock that moves only when the sim device sleeps: its calls take exactly their cost."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(("fixed_ms", "per_frame_ms", "sessions"), [(200.0, 6.0, 3), (50.0, 2.0, 9)])
def test_the_sim_cost_changes_the_measured_capacity_and_who_is_admitted(fixed_ms, per_frame_ms, sessions):
    time_ = SimTime()
    renderer = SimRenderer(fixed_ms, per_frame_ms, 32, sleep=time_.sleep, clock=time_)
    curve = measure(renderer, 32, clock=time_)
    expected = 32 / (fixed_ms + 32 * per_frame_ms) * 1000
    assert curve.frames_per_s == pytest.approx(expected, rel=1e-6)
    assert admitted(capacity(curve.frames_per_s)) == sessions


async def test_a_pool_of_sim_workers_admits_from_the_capacity_its_workers_measured(tmp_path):
    settings = replace(Settings(), renderer="sim", cache_dir=tmp_path, sim_fixed_ms=50.0, sim_per_frame_ms=2.0)
    pool = LocalPool(settings, ["sim:0"])
    await pool.start()
    try:
        cap = pool.capacity()
        # Sleeps only overrun: measured capacity is at most the model's (load can only lower it).
        assert 0 < cap.frames_per_s <= 32 / (50.0 + 32 * 2.0) * 1000 * 1.01
        assert 1 <= admitted(cap) <= 9
    finally:
        await pool.close()


def test_a_front_on_shared_actors_admits_from_the_whole_clusters_load():
    from streamer.pool.front.ray_pool import ActorWorker, RayPool

    settings = replace(Settings(), pool="ray")
    pool = RayPool(settings, ["sim:0", "sim:1"])
    pool.workers = [ActorWorker(i, f"sim:{i}", settings, pool.front, None) for i in range(2)]
    pool.workers[0].report = {"fronts": {pool.front: {"open": 9, "speaking": 9}, "b": {"open": 2, "speaking": 1}}}
    pool.workers[1].report = {"fronts": {"b": {"open": 1, "speaking": 2}, "c": {"open": 1, "speaking": 0}}}
    assert pool.others() == Load(3, 2)  # b's highest figures (reports are a lease apart), and c
    cap = capacity(40.0, devices=2)  # carries 3 speaking sessions at 80 %
    assert decide(cap, Load(0, 0) + pool.others(), 0.8, 1.0).admit is False
    assert decide(cap, Load(0, 0), 0.8, 1.0).admit is True  # on its own it would have admitted
