"""The queue inside a render worker: earliest deadline first across sessions, batched calls.

Jobs carry the time left until their first frame plays, rebased here on this process's clock
(front processes and Ray nodes do not share clocks). The worker takes the most urgent job and
adds the next most urgent ones, from any sessions and templates, while the call stays within
`batch_size` frames and still meets the batch's earliest deadline; it never waits for company.
Control work (preparing a template) goes ahead of every render. No asyncio: a thread runs it.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from streamer.render.base import RenderJob
from streamer.units import FPS

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
"""Upper bounds of the frames-per-call histogram (the last bucket holds everything above)."""


@dataclass(order=True)
class Entry:
    deadline: float
    seq: int
    id: int = field(compare=False)
    job: RenderJob | None = field(compare=False, default=None)
    """None for control work (`op`)."""
    op: dict[str, Any] = field(compare=False, default_factory=dict)
    received: float = field(compare=False, default=0.0)
    offset: int = field(compare=False, default=0)
    """Where this part starts within its job (a job longer than a call's room is split)."""

    @property
    def frames(self) -> int:
        return self.job.frames if self.job is not None else 0

    def split(self, frames: int, seq: int) -> tuple[Entry, Entry]:
        """Its first `frames` frames, and the rest (due that many frames later)."""
        assert self.job is not None and 0 < frames < self.job.frames
        job = self.job
        head = replace(self, job=replace(job, positions=job.positions[:frames]))
        rest = replace(
            self,
            deadline=self.deadline + frames / FPS,
            seq=seq,
            offset=self.offset + frames,
            job=replace(job, positions=job.positions[frames:], first_unit=job.first_unit + frames),
        )
        return head, rest


@dataclass
class Counters:
    """What the worker did, reported with every answer (the front shows the newest)."""

    calls: int = 0
    jobs: int = 0
    frames: int = 0
    compute_s: float = 0.0
    deadline_misses: int = 0
    """Jobs finished after their deadline that had time left when they arrived (a first
    window due at once is urgent, not missed)."""
    cancelled: int = 0
    batch_jobs: dict[str, int] = field(default_factory=dict)
    """Model calls by how many jobs they held."""
    batch_frames: dict[str, int] = field(default_factory=dict)
    """Model calls by frames, bucketed by `BATCH_BUCKETS` (key: the bucket's upper bound)."""

    def record(self, batch: list[Entry], seconds: float, finished: float) -> None:
        frames = sum(e.frames for e in batch)
        self.calls += 1
        self.jobs += len(batch)
        self.frames += frames
        self.compute_s += seconds
        self.deadline_misses += sum(1 for e in batch if e.received < e.deadline < finished)
        key = str(len(batch))
        self.batch_jobs[key] = self.batch_jobs.get(key, 0) + 1
        bucket = str(next((b for b in BATCH_BUCKETS if frames <= b), "inf"))
        self.batch_frames[bucket] = self.batch_frames.get(bucket, 0) + 1


class JobQueue:
    """Thread-safe EDF queue of one worker; `take` blocks until there is work or it closes."""

    def __init__(
        self,
        max_frames: int,
        cost_s: Callable[[int], float],
        batching: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_frames = max(1, max_frames)
        self.cost_s = cost_s
        """Predicted seconds of a call of n frames (the worker's measured curve)."""
        self.batching = batching
        self.clock = clock
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._ready = threading.Condition()
        self._closed = False

    def put(self, job_id: int, job: RenderJob) -> None:
        now = self.clock()
        deadline = now + job.due_in_s if math.isfinite(job.due_in_s) else math.inf
        self._push(Entry(deadline, next(self._seq), job_id, job, received=now))

    def put_control(self, job_id: int, op: dict[str, Any]) -> None:
        self._push(Entry(-math.inf, next(self._seq), job_id, None, op))

    def _push(self, entry: Entry) -> None:
        with self._ready:
            heapq.heappush(self._heap, entry)
            self._ready.notify()

    def cancel(self, session_id: str) -> list[int]:
        """Drop that session's queued jobs; returns their ids."""
        with self._ready:
            dropped = [e.id for e in self._heap if e.job is not None and e.job.session_id == session_id]
            if dropped:
                self._heap = [e for e in self._heap if e.job is None or e.job.session_id != session_id]
                heapq.heapify(self._heap)
            return dropped

    def depth(self) -> int:
        with self._ready:
            return len(self._heap)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._heap.clear()
            self._ready.notify_all()

    def take(self) -> list[Entry] | None:
        """The next call's entries (one control entry, or jobs in deadline order); None once closed."""
        with self._ready:
            while not self._heap and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            batch = [self._pop(self.max_frames if self.batching else None)]
            if batch[0].job is None:
                return batch
            frames = batch[0].frames
            while self.batching and self._heap and frames < self.max_frames:
                if not self._fits(batch, frames, self._heap[0]):
                    break
                batch.append(self._pop(self.max_frames - frames))
                frames += batch[-1].frames
            return batch

    def _pop(self, room: int | None) -> Entry:
        """The most urgent entry, its first `room` frames only if it is longer (the rest stays
        queued, so an urgent job of another session can go between its parts)."""
        entry = heapq.heappop(self._heap)
        if room is not None and entry.job is not None and entry.frames > room:
            entry, rest = entry.split(room, next(self._seq))
            heapq.heappush(self._heap, rest)
        return entry

    def _fits(self, batch: list[Entry], frames: int, candidate: Entry) -> bool:
        """Whether the call takes (what fits of) `candidate` too: the batch's most urgent job
        still on time with it, or the candidate late if it waited for the next call (then one
        call for both costs the batch a few frames' time and saves it a whole call)."""
        if candidate.job is None:
            return False
        more = min(candidate.frames, self.max_frames - frames)
        now = self.clock()
        if now + self.cost_s(frames + more) <= batch[0].deadline:
            return True
        return now + self.cost_s(frames) + self.cost_s(more) > candidate.deadline
