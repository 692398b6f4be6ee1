"""The front half of a pool, whatever the backend: placement, retries, cancel, capacity.

Each job goes to the worker predicted to finish it first: the frames it already holds that
are due no later (its queue runs earliest deadline first), through its measured cost curve.
An idle worker always beats a busy one, so the windows of one utterance spread over idle
devices; equal predictions (within the curves' noise) go to the worker holding fewer jobs, then in turn.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from streamer.errors import WorkerDied
from streamer.pool.base import Capacity, Load
from streamer.pool.front.handle import Handle
from streamer.render.base import RenderJob

TIE = 0.1
TIE_S = 0.005
"""Predictions within 10 % + 5 ms of the best are equal: measured curves carry that much noise."""


class Dispatcher:
    def __init__(self, handles: Sequence[Handle]) -> None:
        self.workers: Sequence[Handle] = list(handles)
        self._turn = 0
        self.templates: set[str] = set()
        """Templates prepared so far: a restarted worker loads them again."""

    @property
    def renderer(self) -> str:
        return next((w.renderer for w in self.workers if w.renderer), "")

    @property
    def audio_context_units(self) -> int:
        return next((w.audio_context_units for w in self.workers if w.renderer), 0)

    def pick(self, frames: int, deadline: float) -> Handle:
        alive = [w for w in self.workers if w.alive]
        if not alive:
            raise WorkerDied("no render worker is running (they are being restarted)")
        count = len(self.workers)
        predicted = {w.stats.index: w.predict(frames, deadline) for w in alive}
        best = min(predicted.values())
        near = [w for w in alive if predicted[w.stats.index] <= best * (1 + TIE) + TIE_S]
        chosen = min(near, key=lambda w: (w.stats.in_flight, (w.stats.index - self._turn) % count))
        self._turn = (chosen.stats.index + 1) % count
        return chosen

    async def render(self, job: RenderJob) -> np.ndarray:
        """Render on the worker predicted to finish first; a dead worker's job is retried once.

        A job that fails or times out is not retried: its window plays over the still face."""
        deadline = time.monotonic() + job.due_in_s if math.isfinite(job.due_in_s) else math.inf
        for attempt in range(2):
            worker = self.pick(job.frames, deadline)
            try:
                return await worker.render(job, deadline)
            except WorkerDied:
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def cancel(self, session_id: str) -> None:
        for worker in self.workers:
            worker.cancel(session_id)

    async def prepare(self, template_id: str, force: bool = False) -> dict[str, str]:
        """Build (or check) a template's cache on one worker, then load it on all the others."""
        alive = [w for w in self.workers if w.alive]
        if not alive:
            raise WorkerDied("no render worker is running")
        key = await alive[0].prepare(template_id, force)
        await asyncio.gather(*(w.prepare(template_id) for w in alive[1:]))
        self.templates.add(template_id)
        return key

    async def reload(self, worker: Handle) -> None:
        """Load every template prepared so far on a (re)started worker."""
        for template_id in sorted(self.templates):
            await worker.prepare(template_id)

    def capacity(self) -> Capacity:
        per = tuple(w.stats.frames_per_s if w.alive else 0.0 for w in self.workers)
        return Capacity(
            frames_per_s=round(sum(per), 1), devices=sum(1 for w in self.workers if w.alive), per_device=per
        )

    def watch_load(self, own_load: Callable[[], Load]) -> None:
        """Nothing to share: these workers serve this front only."""

    def others(self) -> Load:
        return Load(0, 0)

    async def reserve(self, mine: Load) -> Load:
        return self.others()

    def stats(self) -> list[dict[str, Any]]:
        return [
            {**vars(w.stats), "batch_jobs": dict(w.stats.batch_jobs), "batch_frames": dict(w.stats.batch_frames)}
            for w in self.workers
        ]
