"""A render pool in the test's own process, on the test's clock: no worker, no network.

Each job waits `delay(job)` seconds of the fake clock, so jobs finish out of order when their
delays say so; `fail` and `die` make a job raise instead. Every crop's first pixel holds the
loop position it was rendered for, so a test can read which frame played where.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.avatar.prepared import PreparedTemplate, WelcomeClip
from streamer.core.clock import FakeClock
from streamer.errors import Cancelled, StreamerError, WorkerDied
from streamer.render.base import RenderJob


@dataclass
class FakePool:
    clock: FakeClock
    delay: Callable[[RenderJob], float] = lambda job: 0.0
    fail: Callable[[RenderJob], bool] = lambda job: False
    die: Callable[[RenderJob], bool] = lambda job: False
    audio_context_units: int = 0
    renderer: str = "fake"
    jobs: list[RenderJob] = field(default_factory=list)
    """Every job received, in the order it came."""
    rendered: list[RenderJob] = field(default_factory=list)
    """Jobs that completed with crops."""
    cancelled: list[str] = field(default_factory=list)
    _waiting: dict[int, tuple[RenderJob, asyncio.Future[None]]] = field(default_factory=dict)

    async def start(self) -> None:
        pass

    async def render(self, job: RenderJob) -> np.ndarray:
        self.jobs.append(job)
        done = asyncio.get_running_loop().create_future()
        self._waiting[id(done)] = (job, done)
        sleep = asyncio.ensure_future(self.clock.sleep_until(self.clock.now() + self.delay(job)))
        sleep.add_done_callback(lambda _: done.done() or done.set_result(None))
        try:
            await done
        finally:
            sleep.cancel()
            self._waiting.pop(id(done), None)
        if self.die(job):
            raise WorkerDied("the fake worker died")
        if self.fail(job):
            raise StreamerError("the fake renderer failed")
        self.rendered.append(job)
        crops = np.zeros((job.frames, 256, 256, 3), np.uint8)
        crops[:, 0, 0, 0] = np.asarray(job.positions) % 256
        crops[:, 0, 0, 1] = 1  # marks a rendered crop
        return crops

    def cancel(self, session_id: str) -> None:
        self.cancelled.append(session_id)
        for job, done in list(self._waiting.values()):
            if job.session_id == session_id and not done.done():
                done.set_exception(Cancelled("interrupted"))

    async def prepare(self, template_id: str, force: bool = False) -> dict[str, str]:
        return {"renderer": self.renderer}

    def stats(self) -> list[dict[str, Any]]:
        return [{"index": 0, "device": "fake", "alive": True}]

    async def close(self) -> None:
        pass


def tiny_template(frames: int = 1, welcome_units: int = 0) -> PreparedTemplate:
    """A 64×64 template (gray frames, the whole frame as its boxes); welcome audio is all 7s."""
    welcome = None
    if welcome_units:
        welcome = WelcomeClip(
            positions=np.arange(welcome_units, dtype=np.int64),
            crops=np.zeros((welcome_units, 256, 256, 3), np.uint8),
            audio=np.full(welcome_units * 1920, 7, np.int16),
        )
    box = np.tile(np.array([0, 0, 64, 64], np.int32), (frames, 1))
    return PreparedTemplate(
        id="tiny",
        name="Tiny",
        kind="photo" if frames == 1 else "video",
        frames=np.full((frames, 64, 64, 3), 128, np.uint8),
        face_boxes=box,
        mouth=np.tile(np.array([128, 180], np.float32), (frames, 1)),
        blend_boxes=box,
        blend_masks=np.full((frames, 256, 256), 255, np.uint8),
        renderer="fake",
        welcome=welcome,
    )


async def play_ticks(core: Any, clock: FakeClock, ticks: int) -> list:
    """Play `ticks` units of a conversation on the fake clock, letting its tasks run before each."""
    units = []
    for _ in range(ticks):
        for _ in range(10):
            await asyncio.sleep(0)
        units.append(core.tick())
        await clock.advance(0.04)
    return units
