"""The local render pool: a worker process per device, jobs dealt round-robin.

A job goes to the next worker in turn, skipping one that is busy (already holding
`MAX_IN_FLIGHT` jobs) or dead; a dead worker's jobs are retried once on another and the
worker is restarted. Results come back to the caller's own future, so windows rendered on
different devices are put back in order by whoever awaits them (the session).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing as mp
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable

import numpy as np

from streamer.config import Settings, settings_to_json
from streamer.errors import Busy, NotReady, StreamerError, WorkerDied
from streamer.pool.wire import decode, encode
from streamer.pool.worker import worker_main
from streamer.render.base import RenderJob

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 2
"""Jobs a worker holds at once: one rendering, one waiting in its pipe (keeps a GPU fed)."""
START_TIMEOUT_S = 600.0
"""Loading full-size models from a slow disk can take minutes."""
RESTART_BACKOFF_S = (1.0, 5.0, 30.0)
"""Waits before restarting a dead worker: after its first, second, and every later death."""


@dataclass
class WorkerStats:
    index: int
    device: str
    alive: bool = False
    in_flight: int = 0
    jobs: int = 0
    frames: int = 0
    errors: int = 0
    restarts: int = 0
    busy_seconds: float = 0.0


class Worker:
    """The web process's handle on one worker process."""

    def __init__(self, index: int, device: str, settings: Settings, progress: bool = False) -> None:
        self.stats = WorkerStats(index, device)
        self._settings = settings
        self._progress = progress
        self.on_death: Callable[["Worker"], None] | None = None
        # Its own thread for pipe I/O: a send blocks while the worker renders, and must not
        # hold a thread of the default pool that video encoding needs.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"worker{index}-io")
        self._pending: dict[int, asyncio.Future[tuple[dict[str, Any], dict[str, np.ndarray]]]] = {}
        self._ids = itertools.count()
        self._conn: Connection | None = None
        self._process: mp.process.BaseProcess | None = None
        self._send_lock = asyncio.Lock()
        self.renderer = ""
        self.audio_context_units = 0

    @property
    def alive(self) -> bool:
        return self.stats.alive

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._process = ctx.Process(
            target=worker_main,
            args=(child, self.stats.index, self.stats.device, settings_to_json(self._settings), self._progress),
            name=f"render-worker-{self.stats.index}",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._conn = parent
        try:
            ready = await asyncio.wait_for(loop.run_in_executor(self._io, self._read_hello, parent), START_TIMEOUT_S)
        except asyncio.TimeoutError:
            ready = {"type": "failed", "error": f"not ready in {START_TIMEOUT_S:.0f} s"}
        if ready.get("type") != "ready":
            self._discard_process()
            raise NotReady(f"worker {self.stats.index} on {self.stats.device} failed: {ready.get('error')}")
        self.renderer = ready["renderer"]
        self.audio_context_units = int(ready["audio_context_units"])
        self.stats.alive = True
        threading.Thread(target=self._read_loop, args=(loop, parent), daemon=True).start()
        log.info("worker %d on %s ready (%s)", self.stats.index, self.stats.device, self.renderer)

    @staticmethod
    def _read_hello(conn: Connection) -> dict[str, Any]:
        try:
            return decode(conn.recv_bytes())[0]
        except (EOFError, OSError):
            return {"type": "failed", "error": "exited while starting"}

    def _read_loop(self, loop: asyncio.AbstractEventLoop, conn: Connection) -> None:
        try:
            while True:
                try:
                    data = conn.recv_bytes()
                except (EOFError, OSError):
                    loop.call_soon_threadsafe(self._died)
                    return
                loop.call_soon_threadsafe(self._deliver, data)
        except RuntimeError:  # the event loop closed first (shutdown): nobody is waiting
            return

    def _deliver(self, data: bytes) -> None:
        meta, arrays = decode(data)
        future = self._pending.pop(meta.get("id"), None)
        if future is not None and not future.done():
            future.set_result((meta, arrays))

    def _died(self) -> None:
        if not self.stats.alive:
            return
        self.stats.alive = False
        log.error("worker %d on %s died", self.stats.index, self.stats.device)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(WorkerDied(f"worker {self.stats.index} died"))
        self._pending.clear()
        if self.on_death is not None:
            self.on_death(self)

    async def call(
        self, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None, timeout: float
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if not self.alive or self._conn is None:
            raise WorkerDied(f"worker {self.stats.index} is not running")
        job_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[job_id] = future
        payload = encode({**meta, "id": job_id}, arrays)
        self.stats.in_flight += 1
        started = time.perf_counter()
        try:
            async with self._send_lock:
                send = asyncio.get_running_loop().run_in_executor(self._io, self._conn.send_bytes, payload)
                try:
                    # A cancelled caller must not release the lock mid-message: the next
                    # send would interleave with this one on the pipe.
                    await asyncio.shield(send)
                except asyncio.CancelledError:
                    await asyncio.wait([send])
                    raise
                except OSError:  # the process is gone; its reader thread may not know yet
                    self._died()
                    raise WorkerDied(f"worker {self.stats.index} is gone") from None
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            log.error("worker %d: no answer in %.0f s; restarting it", self.stats.index, timeout)
            self.kill()
            raise WorkerDied(f"worker {self.stats.index} timed out") from None
        finally:
            self._pending.pop(job_id, None)
            self.stats.in_flight -= 1
            self.stats.busy_seconds += time.perf_counter() - started

    def kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        self._died()

    async def stop(self) -> None:
        alive, self.stats.alive = self.alive, False  # an exit now is not a death
        if self._conn is not None and alive:
            try:
                self._conn.send_bytes(encode({"op": "stop"}))
            except OSError:
                pass
        if self._process is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._process.join, 5)
        self._discard_process()

    def _discard_process(self) -> None:
        """Kill the process if it still runs, and release it and its pipe."""
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
            self._process.close()
            self._process = None
        if self._conn is not None:
            self._conn.close()  # also ends the reader thread
            self._conn = None


class LocalPool:
    """Worker processes on this machine, one per device."""

    def __init__(self, settings: Settings, devices: list[str], progress: bool = False) -> None:
        self._settings = settings
        self.workers = [Worker(i, d, settings, progress) for i, d in enumerate(devices)]
        for worker in self.workers:
            worker.on_death = self._restart
        self._next = 0
        self._restarts: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def renderer(self) -> str:
        return next((w.renderer for w in self.workers if w.renderer), "")

    @property
    def audio_context_units(self) -> int:
        return next((w.audio_context_units for w in self.workers if w.renderer), 0)

    async def start(self) -> None:
        await asyncio.gather(*(w.start() for w in self.workers))

    def cancel(self, session_id: str) -> None:
        """Nothing to drop here: jobs go straight to a worker, and the session discards the
        results of a stale epoch itself."""

    def _pick(self) -> Worker:
        alive = [w for w in self.workers if w.alive]
        if not alive:
            raise Busy("no render worker is running (they are being restarted)")
        count = len(self.workers)
        for step in range(count):
            worker = self.workers[(self._next + step) % count]
            if worker.alive and worker.stats.in_flight < MAX_IN_FLIGHT:
                self._next = (worker.stats.index + 1) % count
                return worker
        return min(alive, key=lambda w: w.stats.in_flight)

    async def render(self, job: RenderJob) -> np.ndarray:
        meta = {
            "op": "render",
            "template_id": job.template_id,
            "first_unit": job.first_unit,
            "final": job.final,
        }
        arrays = {"positions": np.asarray(job.positions, dtype=np.int64), "audio": job.audio.astype(np.float32, copy=False)}
        for attempt in range(2):
            worker = self._pick()
            try:
                reply, out = await worker.call(meta, arrays, self._settings.render_timeout_s)
            except WorkerDied:
                if attempt == 1:
                    raise
                continue  # its restart is under way; another worker takes the job
            if not reply["ok"]:
                worker.stats.errors += 1
                raise StreamerError(f"render failed on worker {worker.stats.index}: {reply['error']}")
            worker.stats.jobs += 1
            worker.stats.frames += job.frames
            return out["crops"]
        raise AssertionError("unreachable")

    async def prepare(self, template_id: str, force: bool = False) -> dict[str, str]:
        """Build (or check) a template's cache on the first running worker; returns its key."""
        worker = next((w for w in self.workers if w.alive), None)
        if worker is None:
            raise NotReady("no render worker is running")
        reply, _ = await worker.call(
            {"op": "prepare", "template_id": template_id, "force": force}, None, START_TIMEOUT_S
        )
        if not reply["ok"]:
            raise StreamerError(f"preparing {template_id} failed: {reply['error']}")
        return reply["key"]

    def _restart(self, worker: Worker) -> None:
        """Restart a dead worker in the background, waiting longer after each failure."""
        if self._closed or any(t.get_name() == f"restart-{worker.stats.index}" for t in self._restarts):
            return

        async def restart() -> None:
            await worker.stop()
            while not self._closed:
                wait = RESTART_BACKOFF_S[min(worker.stats.restarts, len(RESTART_BACKOFF_S) - 1)]
                await asyncio.sleep(wait)
                worker.stats.restarts += 1
                try:
                    await worker.start()
                    log.info("worker %d restarted", worker.stats.index)
                    return
                except Exception as exc:  # noqa: BLE001 - tried again after the next wait
                    log.error("worker %d could not restart: %s", worker.stats.index, exc)

        task = asyncio.get_running_loop().create_task(restart(), name=f"restart-{worker.stats.index}")
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    def stats(self) -> list[dict[str, Any]]:
        return [vars(w.stats).copy() for w in self.workers]

    async def close(self) -> None:
        self._closed = True
        for task in list(self._restarts):
            task.cancel()
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
