"""A render worker in a local process, and the pipe that carries its messages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from streamer.config import Settings, render_slice, settings_to_json
from streamer.errors import NotReady, WorkerDied
from streamer.pool.channel import Channel
from streamer.pool.front.handle import Handle
from streamer.pool.wire import decode, encode
from streamer.pool.worker.main import worker_main

log = logging.getLogger(__name__)

START_TIMEOUT_S = 600.0
"""Loading full-size models from a slow disk can take minutes."""


class ProcessWorker(Handle):
    def __init__(
        self,
        index: int,
        device: str,
        settings: Settings,
        progress: bool = False,
        on_death: Callable[[ProcessWorker], None] | None = None,
    ) -> None:
        """`on_death(worker)` hears of a worker process that died (not one stopped on purpose)."""
        super().__init__(index, device, settings.render_timeout_s)
        self._settings = settings
        self._progress = progress
        self._on_death = on_death
        # One thread for pipe writes: a send blocks while the pipe is full, and must not hold
        # a thread of the default pool that video encoding needs. One thread also means
        # messages never interleave on the pipe.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"worker{index}-io")
        self._conn: Channel | None = None
        self._process: mp.process.BaseProcess | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._process = ctx.Process(
            target=worker_main,
            args=(
                child,
                self.stats.index,
                self.stats.device,
                settings_to_json(render_slice(self._settings)),
                self._progress,
            ),
            name=f"render-worker-{self.stats.index}",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._conn = conn = Channel.adopt(parent)
        try:
            ready = await asyncio.wait_for(loop.run_in_executor(self._io, self._read_hello, conn), START_TIMEOUT_S)
        except TimeoutError:
            ready = {"type": "failed", "error": f"not ready in {START_TIMEOUT_S:.0f} s"}
        if ready.get("type") != "ready":
            self._discard_process()
            raise NotReady(f"worker {self.stats.index} on {self.stats.device} failed: {ready.get('error')}")
        self.ready(ready)
        threading.Thread(target=self._read_loop, args=(loop, conn), daemon=True).start()
        log.info(
            "worker %d on %s ready (%s, %.0f frames/s)",
            self.stats.index,
            self.stats.device,
            self.renderer,
            self.stats.frames_per_s,
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @staticmethod
    def _read_hello(conn: Channel) -> dict[str, Any]:
        try:
            return decode(conn.recv())[0]
        except (EOFError, OSError):
            return {"type": "failed", "error": "exited while starting"}

    def _read_loop(self, loop: asyncio.AbstractEventLoop, conn: Channel) -> None:
        try:
            while True:
                try:
                    data = conn.recv()
                except (EOFError, OSError):
                    loop.call_soon_threadsafe(self._on_exit)
                    return
                loop.call_soon_threadsafe(self._deliver, data)
        except RuntimeError:  # the event loop closed first (shutdown): nobody is waiting
            return

    def _deliver(self, data: memoryview) -> None:
        meta, arrays = decode(data)
        if meta.get("type") == "started":
            self._started(meta["ids"])
        else:
            self._done(meta, arrays)

    def _on_exit(self) -> None:
        if not self.stats.alive:
            return
        self.stats.alive = False
        log.error("worker %d on %s died", self.stats.index, self.stats.device)
        self._died()
        if self._on_death is not None:
            self._on_death(self)

    async def _send(self, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None) -> None:
        conn = self._conn
        if conn is None:
            raise WorkerDied(f"worker {self.stats.index} is not running")
        # Shielded: a caller cancelled mid-write must not leave half a message on the pipe.
        send = asyncio.get_running_loop().run_in_executor(self._io, conn.send, encode(meta, arrays))
        try:
            await asyncio.shield(send)
        except OSError:  # the process is gone; its reader thread may not know yet
            self._on_exit()
            raise WorkerDied(f"worker {self.stats.index} is gone") from None

    def _send_cancel(self, session_id: str) -> None:
        conn = self._conn
        if conn is not None:
            future = asyncio.get_running_loop().run_in_executor(
                self._io, conn.send, encode({"op": "cancel", "session_id": session_id})
            )
            future.add_done_callback(lambda f: f.exception())  # a dead pipe is noticed elsewhere

    def _hung(self) -> None:
        self.kill()

    def kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        self._on_exit()

    async def stop(self) -> None:
        alive, self.stats.alive = self.alive, False  # an exit now is not a death
        if self._conn is not None and alive:
            with contextlib.suppress(OSError):
                self._conn.send(encode({"op": "stop"}))
        if self._process is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._process.join, 5)
        self._died()
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
