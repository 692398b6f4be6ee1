"""Whether one more session may open: the speaking load the render plane can carry.

A session speaking continuously needs 25 frames/s; each open session plans `speaking_share`
of that, and sessions speaking right now count in full when more speak than planned. A new
session is admitted while the planned load is under `admission_threshold` of the workers'
measured capacity (frames/s in full batches) and the load with it stays under the whole
capacity: a device near 30 frames/s takes one speaking session, one at 80 takes three. The
first session is always admitted, even on devices slower than real time (MuseTalk on a CPU):
it stalls, but refusing everyone would serve no one. `max_sessions` stays a hard ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamer.errors import Busy
from streamer.pool.base import Capacity, Load
from streamer.units import FPS

__all__ = ["Decision", "Load", "admit", "decide"]

RETRY_AFTER_S = 10
"""Seconds a refused client waits: about one utterance, after which a session often ends."""


@dataclass(frozen=True)
class Decision:
    admit: bool
    planned_fps: float
    """Frames/s the open sessions plan to use, this one not included."""
    budget_fps: float
    """`admission_threshold` of the capacity."""
    sessions: int
    """Sessions that fit the budget at `speaking_share`."""
    retry_after_s: int = 0


def _fits(planned: float, per_session: float, budget: float, capacity: float) -> bool:
    return planned == 0 or (planned < budget and planned + per_session < capacity)


def decide(capacity: Capacity, load: Load, threshold: float, speaking_share: float) -> Decision:
    total = capacity.frames_per_s
    budget = total * threshold
    per_session = FPS * speaking_share
    planned = max(load.open_sessions * per_session, load.speaking * FPS)
    sessions = 0
    while _fits(sessions * per_session, per_session, budget, total):
        sessions += 1
    admit = _fits(planned, per_session, budget, total)
    return Decision(admit, round(planned, 1), round(budget, 1), sessions, 0 if admit else RETRY_AFTER_S)


def admit(capacity: Capacity, load: Load, threshold: float, speaking_share: float) -> Decision:
    """`decide`, raising `Busy` with a `Retry-After` when the session does not fit."""
    decision = decide(capacity, load, threshold, speaking_share)
    if not decision.admit:
        raise Busy(
            f"the render devices are at capacity: {capacity.frames_per_s:.0f} frames/s carry "
            f"{decision.sessions} speaking session(s) at {threshold:.0%} load and "
            f"{load.open_sessions} are open; try again in {decision.retry_after_s} s",
            retry_after_s=decision.retry_after_s,
        )
    return decision
