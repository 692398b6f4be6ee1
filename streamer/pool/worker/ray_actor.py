"""A render worker as a Ray actor shared by every front: the same `RenderLoop` (EDF queue,
batching) as a local process, fed by all the signalling servers that join the cluster.

Messages are the pipe's bytes (a JSON header and raw arrays), so what crosses the cluster is
data, never objects of ours. Each front numbers its own jobs; the actor gives every job an id
of its own and answers each front with the front's ids: `started` when the job leaves the
queue, then `done`, as one streamed call. Fronts renew a lease every `LEASE_S` with their load
(open and speaking sessions); a front not heard of for `LEASE_TTL_S` (it exited or crashed) has
its queued jobs cancelled, not rendered for nobody. Ray restarts a dead actor; its queue starts empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.config import render_settings_from_json
from streamer.errors import Cancelled
from streamer.memory import tune_malloc
from streamer.pool.wire import decode, encode, error_reply
from streamer.pool.worker.loop import RenderLoop

log = logging.getLogger(__name__)

LEASE_S = 1.0
"""How often a front renews its lease (and reads the actor's report)."""
LEASE_TTL_S = 10.0
"""A front not heard of for this long is gone: its jobs are cancelled, its load forgotten."""


@dataclass
class Job:
    front: str
    front_id: int
    session_id: str
    frames: int
    replies: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    started: bool = False


@dataclass
class Front:
    load: dict[str, int]
    seen: float


class RenderActor:
    def __init__(self, index: int, device: str, settings_json: dict[str, Any]) -> None:
        tune_malloc()  # a no-op when the runtime env set GLIBC_TUNABLES, as the pool does
        logging.basicConfig(
            level=os.environ.get("STREAMER_LOG_LEVEL", "INFO"),
            format=f"%(asctime)s %(levelname)s actor{index}[{device}] %(name)s: %(message)s",
        )
        if device == "cpu":
            os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.server = RenderLoop(render_settings_from_json(settings_json), device)
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count()
        self._fronts: dict[str, Front] = {}
        self._ahead: dict[str, int] = {}
        """Jobs of each front started while another front's earlier jobs waited (EDF at work)."""
        self._loop: asyncio.AbstractEventLoop | None = None

    def hello(self) -> dict[str, Any]:
        return {**self.server.hello(), "pid": os.getpid()}

    async def call(self, front: str, payload: bytes) -> AsyncIterator[bytes]:
        """One render or prepare message in; streamed out: `started` (renders), then `done`."""
        self._begin()
        self._seen(front)
        meta, arrays = decode(payload)
        local = next(self._ids)
        frames = len(arrays["positions"]) if "positions" in arrays else 0
        job = Job(front, int(meta["id"]), str(meta.get("session_id", "")), frames)
        self._jobs[local] = job
        self.server.submit({**meta, "id": local}, arrays)
        try:
            while True:
                data = await job.replies.get()
                yield data
                if decode(data)[0].get("type") == "done":
                    return
        finally:
            self._jobs.pop(local, None)

    async def lease(self, front: str, load: dict[str, int]) -> dict[str, Any]:
        """A front's heartbeat with its load; returns what this actor holds (admission, placement)."""
        self._begin()
        self._seen(front, load)
        return self.report()

    def leave(self, front: str) -> None:
        """A front closing: its jobs are cancelled and its load forgotten now."""
        self._fronts.pop(front, None)
        self._drop(lambda job: job.front == front)

    def cancel(self, session_id: str) -> None:
        self._drop(lambda job: job.session_id == session_id and bool(session_id))

    def report(self) -> dict[str, Any]:
        """Fronts and their loads, queued jobs by front, seconds until the queue is rendered."""
        by_front: dict[str, int] = {}
        frames_by_front: dict[str, int] = {}
        for job in self._jobs.values():
            by_front[job.front] = by_front.get(job.front, 0) + 1
            frames_by_front[job.front] = frames_by_front.get(job.front, 0) + job.frames
        return {
            "pid": os.getpid(),
            "fronts": {name: f.load for name, f in self._fronts.items()},
            "jobs_by_front": by_front,
            "frames_by_front": frames_by_front,
            "ahead_by_front": dict(self._ahead),
            "queued": self.server.queue.depth(),
            "predicted_finish_s": round(self.server.curve.seconds(sum(frames_by_front.values())), 3),
        }

    # -- inside the actor ------------------------------------------------------------------

    def _begin(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            threading.Thread(target=self.server.run, args=(self._send,), name="render", daemon=True).start()
            self._loop.create_task(self._reap())

    def _seen(self, front: str, load: dict[str, int] | None = None) -> None:
        known = self._fronts.get(front)
        self._fronts[front] = Front(load if load is not None else (known.load if known else {}), time.monotonic())

    async def _reap(self) -> None:
        """Forget the fronts whose lease ran out, and cancel their jobs."""
        while True:
            await asyncio.sleep(LEASE_S)
            now = time.monotonic()
            for name in [n for n, f in self._fronts.items() if now - f.seen > LEASE_TTL_S]:
                log.warning("front %s is gone (no lease for %.0f s): its jobs are cancelled", name, LEASE_TTL_S)
                self.leave(name)

    def _drop(self, which: Any) -> None:
        """Cancel the queued jobs `which` picks; their calls end with `Cancelled`."""
        sessions = {job.session_id for job in self._jobs.values() if which(job) and job.session_id}
        for session_id in sessions:
            for local in self.server.cancel(session_id):
                job = self._jobs.get(local)
                if job is not None:
                    reply = {"type": "done", "id": job.front_id, **error_reply(Cancelled("render cancelled"))}
                    job.replies.put_nowait(encode(reply))

    def _send(self, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None) -> None:
        """From the render thread: each answer, with its front's id, to its job's call."""
        if meta.get("type") == "started":
            jobs = {int(i): self._jobs.get(int(i)) for i in meta["ids"]}
            new = {i: j for i, j in jobs.items() if j is not None and not j.started}  # not a later part
            for job in new.values():
                job.started = True
            for local, job in new.items():
                self._count_ahead(local, job)
                self._put(job, encode({"type": "started", "ids": [job.front_id]}))
            return
        done = self._jobs.get(int(meta.get("id", -1)))
        if done is not None:
            self._put(done, encode({**meta, "id": done.front_id}, arrays))

    def _put(self, job: Job, data: bytes) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(job.replies.put_nowait, data)

    def _count_ahead(self, local: int, job: Job) -> None:
        """Count a job started before an earlier render job of another front (render thread;
        `list` copies the dict under the GIL)."""
        waiting = [j for i, j in list(self._jobs.items()) if i < local and not j.started and j.frames]
        if any(other.front != job.front for other in waiting):
            self._ahead[job.front] = self._ahead.get(job.front, 0) + 1
