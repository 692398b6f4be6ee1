"""The local render pool: a worker process per device on this machine.

A dead worker's jobs are retried once on another and it is restarted in the background,
waiting longer after each failure; once up it loads the templates prepared so far.
"""

from __future__ import annotations

import asyncio
import logging

from streamer.config import Settings
from streamer.pool.front.dispatch import Dispatcher
from streamer.pool.front.process import ProcessWorker

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = (1.0, 5.0, 30.0)
"""Waits before restarting a dead worker: after its first, second, and every later death."""


class LocalPool(Dispatcher):
    """Worker processes on this machine, one per device."""

    def __init__(self, settings: Settings, devices: list[str], progress: bool = False) -> None:
        self.workers: list[ProcessWorker] = [
            ProcessWorker(i, d, settings, progress, on_death=self._restart) for i, d in enumerate(devices)
        ]
        super().__init__(self.workers)
        self._restarts: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self) -> None:
        await asyncio.gather(*(w.start() for w in self.workers))

    def _restart(self, worker: ProcessWorker) -> None:
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
                    await self.reload(worker)
                    log.info("worker %d restarted", worker.stats.index)
                    await worker.announce_restart()
                    return
                except Exception as exc:  # noqa: BLE001 - tried again after the next wait
                    log.error("worker %d could not restart: %s", worker.stats.index, exc)

        task = asyncio.get_running_loop().create_task(restart(), name=f"restart-{worker.stats.index}")
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._restarts):
            task.cancel()
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
