"""A render worker as a Ray actor: the same `Server` (EDF queue, batching) as a local process.

Messages are the pipe's bytes (a JSON header and raw arrays), so what crosses the cluster is
data, never objects of ours. Ray restarts a dead actor; its queue starts empty.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

import numpy as np

from streamer.config import settings_from_json
from streamer.pool.serve import Server
from streamer.pool.wire import decode, encode

log = logging.getLogger(__name__)


class RenderActor:
    def __init__(self, index: int, device: str, settings_json: dict[str, Any]) -> None:
        logging.basicConfig(
            level=os.environ.get("STREAMER_LOG_LEVEL", "INFO"),
            format=f"%(asctime)s %(levelname)s actor{index}[{device}] %(name)s: %(message)s",
        )
        if device == "cpu":
            os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.server = Server(settings_from_json(settings_json), device)
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def hello(self) -> dict[str, Any]:
        return {**self.server.hello(), "pid": os.getpid()}

    async def call(self, payload: bytes) -> bytes:
        """One render or prepare message in, its answer (same format) out, once rendered."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            threading.Thread(target=self.server.run, args=(self._send,), name="render", daemon=True).start()
        meta, arrays = decode(payload)
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._waiting[int(meta["id"])] = future
        self.server.submit(meta, arrays)
        try:
            return await future
        finally:
            self._waiting.pop(int(meta["id"]), None)

    def cancel(self, session_id: str) -> None:
        self.server.cancel(session_id)

    def _send(self, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None) -> None:
        if meta.get("type") != "done" or self._loop is None:
            return
        data = encode(meta, arrays)
        self._loop.call_soon_threadsafe(self._resolve, int(meta["id"]), data)

    def _resolve(self, job_id: int, data: bytes) -> None:
        future = self._waiting.get(job_id)
        if future is not None and not future.done():
            future.set_result(data)
