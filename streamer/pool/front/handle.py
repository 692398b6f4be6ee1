"""The front's handle on one render worker, whatever carries its messages (pipe or Ray).

It keeps the jobs sent and not yet answered: their futures, sessions, sizes and deadlines
(for placement by predicted finish), and a compute timer armed when the worker says it
started a job, so time spent queueing never counts against `render_timeout_s`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.errors import Cancelled, RenderTimeout, WorkerDied
from streamer.pool.costs import CostCurve
from streamer.pool.wire import job_message, reply_error
from streamer.render.base import RenderJob

log = logging.getLogger(__name__)

Reply = tuple[dict[str, Any], dict[str, np.ndarray]]


@dataclass
class WorkerStats:
    index: int
    device: str
    alive: bool = False
    in_flight: int = 0
    """Jobs sent and not answered yet (queued in the worker or rendering)."""
    queued: int = 0
    """Of those, jobs the worker has not started."""
    jobs: int = 0
    frames: int = 0
    errors: int = 0
    timeouts: int = 0
    restarts: int = 0
    busy_seconds: float = 0.0
    """Compute time the worker reports (model calls only, not queueing)."""
    frames_per_s: float = 0.0
    """Measured capacity: frames per second in full batches."""
    fixed_ms: float = 0.0
    per_frame_ms: float = 0.0
    call_ms: float = 0.0
    """A full-batch call, measured."""
    deadline_misses: int = 0
    cancelled: int = 0
    calls: int = 0
    batch_jobs: dict[str, int] = field(default_factory=dict)
    batch_frames: dict[str, int] = field(default_factory=dict)


@dataclass
class Pending:
    future: asyncio.Future[Reply]
    session_id: str = ""
    frames: int = 0
    deadline: float = math.inf
    started: bool = False
    timer: asyncio.TimerHandle | None = None


class Handle:
    """Bookkeeping shared by the backends; they implement `_send` and `_send_cancel`."""

    def __init__(self, index: int, device: str, render_timeout_s: float) -> None:
        self.stats = WorkerStats(index, device)
        self.curve: CostCurve | None = None
        self.renderer = ""
        self.audio_context_units = 0
        self.render_timeout_s = render_timeout_s
        self._pending: dict[int, Pending] = {}
        self._ids = itertools.count()
        self._restarted = asyncio.Condition()

    @property
    def alive(self) -> bool:
        return self.stats.alive

    def ready(self, hello: dict[str, Any]) -> None:
        """The worker's hello: what it runs and its measured cost curve."""
        self.renderer = hello["renderer"]
        self.audio_context_units = int(hello["audio_context_units"])
        self.set_curve(CostCurve.from_json(hello["curve"]))
        self.stats.alive = True

    async def restarted(self, times: int, timeout: float) -> None:
        """Until this worker runs again after its `times`-th restart (tests and tools wait on it)."""
        async with self._restarted:
            await asyncio.wait_for(
                self._restarted.wait_for(lambda: self.alive and self.stats.restarts >= times), timeout
            )

    async def announce_restart(self) -> None:
        """The worker runs again after a restart (counted by the backend): wake who waits."""
        async with self._restarted:
            self._restarted.notify_all()

    def set_curve(self, curve: CostCurve) -> None:
        self.curve = curve
        self.stats.frames_per_s = round(curve.frames_per_s, 1)
        self.stats.fixed_ms, self.stats.per_frame_ms = round(curve.fixed_s * 1e3, 2), round(curve.per_frame_s * 1e3, 3)
        self.stats.call_ms = round(curve.seconds(curve.batch_size) * 1e3, 2)

    def predict(self, frames: int, deadline: float) -> float:
        """Seconds until this worker would finish a job of `frames` due at `deadline` (EDF:
        only the jobs it holds that are due no later go first)."""
        ahead = sum(p.frames for p in self._pending.values() if p.deadline <= deadline)
        if self.curve is None:
            return float(ahead + frames)
        return self.curve.seconds(ahead + frames)

    async def render(self, job: RenderJob, deadline: float) -> np.ndarray:
        job_id, pending = self._open(job.session_id, job.frames, deadline)
        meta, arrays = job_message(job, deadline - time.monotonic())
        reply, out = await self._exchange(job_id, pending, {**meta, "id": job_id}, arrays)
        if not reply["ok"]:
            self.stats.errors += 1
            raise reply_error(reply, f"render failed on worker {self.stats.index}")
        self.stats.jobs += 1
        self.stats.frames += job.frames
        return out["crops"]

    async def prepare(self, template_id: str, force: bool = False) -> dict[str, str]:
        job_id, pending = self._open("", 0, -math.inf)
        meta = {"op": "prepare", "id": job_id, "template_id": template_id, "force": force}
        reply, _ = await self._exchange(job_id, pending, meta, None)
        if not reply["ok"]:
            raise reply_error(reply, f"preparing {template_id} failed")
        key: dict[str, str] = reply["key"]
        return key

    def cancel(self, session_id: str) -> None:
        """Fail that session's jobs here at once and have the worker drop them from its queue."""
        mine = [i for i, p in self._pending.items() if p.session_id == session_id and session_id]
        for job_id in mine:
            self._finish(job_id, Cancelled(f"render cancelled for session {session_id}"))
        if mine and self.alive:
            self._send_cancel(session_id)

    # -- for the backends ------------------------------------------------------------------

    def _open(self, session_id: str, frames: int, deadline: float) -> tuple[int, Pending]:
        if not self.alive:
            raise WorkerDied(f"worker {self.stats.index} is not running")
        job_id = next(self._ids)
        pending = Pending(asyncio.get_running_loop().create_future(), session_id, frames, deadline)
        self._pending[job_id] = pending
        self._count()
        return job_id, pending

    async def _exchange(
        self, job_id: int, pending: Pending, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None
    ) -> Reply:
        try:
            await self._send(meta, arrays)
            return await pending.future
        finally:
            self._finish(job_id, None)
            if pending.future.done() and not pending.future.cancelled():
                pending.future.exception()  # retrieved: a cancel may have failed it while we were still sending

    def _started(self, ids: list[int], extra_s: float = 0.0) -> None:
        """The worker started these jobs: arm their compute timers (`extra_s` later still,
        for a backend that cannot say when a job leaves its queue, only predict it)."""
        loop = asyncio.get_running_loop()
        for job_id in ids:
            pending = self._pending.get(job_id)
            if pending is not None and not pending.started:
                pending.started = True
                pending.timer = loop.call_later(self.render_timeout_s + extra_s, self._timed_out, job_id)
        self._count()

    def _done(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        counters = meta.get("counters")
        if counters:
            self.stats.busy_seconds = round(counters["compute_s"], 3)
            for name in ("deadline_misses", "cancelled", "calls", "batch_jobs", "batch_frames"):
                setattr(self.stats, name, counters[name])
        pending = self._pending.get(meta.get("id", -1))
        if pending is not None and not pending.future.done():
            pending.future.set_result((meta, arrays))

    def _timed_out(self, job_id: int) -> None:
        self.stats.timeouts += 1
        log.error("worker %d: a job computed for over %.0f s; failing it", self.stats.index, self.render_timeout_s)
        self._finish(
            job_id, RenderTimeout(f"render took over {self.render_timeout_s:.0f} s on worker {self.stats.index}")
        )
        self._hung()

    def _died(self) -> None:
        """Fail every job it held (the caller retries them elsewhere)."""
        for job_id in list(self._pending):
            self._finish(job_id, WorkerDied(f"worker {self.stats.index} died"))

    def _finish(self, job_id: int, error: BaseException | None) -> None:
        pending = self._pending.pop(job_id, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        if error is not None and not pending.future.done():
            pending.future.set_exception(error)
        self._count()

    def _count(self) -> None:
        self.stats.in_flight = len(self._pending)
        self.stats.queued = sum(1 for p in self._pending.values() if not p.started)

    async def _send(self, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None) -> None:
        raise NotImplementedError

    def _send_cancel(self, session_id: str) -> None:
        raise NotImplementedError

    def _hung(self) -> None:
        """A job overran its compute time: the worker is stuck; backends restart it."""
        raise NotImplementedError
