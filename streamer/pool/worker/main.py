"""A render worker process: one renderer on one device, its EDF queue fed from a pipe.

A reader thread takes messages off the pipe as they come (so a cancel or an urgent job is
seen while a batch renders); the main thread renders and is the only one that writes.
"""

from __future__ import annotations

import logging
import os
import threading
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from streamer.config import render_settings_from_json
from streamer.errors import StreamerError
from streamer.lifeline import exit_with_parent
from streamer.memory import tune_malloc
from streamer.pool.channel import Channel
from streamer.pool.wire import decode, encode
from streamer.pool.worker.loop import RenderLoop

log = logging.getLogger(__name__)


def worker_main(
    pipe: Connection, index: int, device: str, settings_json: dict[str, Any], progress: bool = False
) -> None:
    tune_malloc()
    exit_with_parent(os.getppid())
    conn = Channel.adopt(pipe)
    logging.basicConfig(
        level=os.environ.get("STREAMER_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s %(levelname)s worker{index}[{device}] %(name)s: %(message)s",
    )
    if device == "cpu":
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        server = RenderLoop(render_settings_from_json(settings_json), device, progress)
    except StreamerError as exc:
        conn.send(encode({"type": "failed", "error": str(exc)}))
        return
    conn.send(encode(server.hello()))
    threading.Thread(target=_read, args=(conn, server), name="pipe-reader", daemon=True).start()

    def send(meta: dict[str, Any], arrays: dict[str, np.ndarray] | None) -> None:
        try:
            conn.send(encode(meta, arrays))
        except OSError:  # the web process is gone
            server.queue.close()

    server.run(send)


def _read(conn: Channel, server: RenderLoop) -> None:
    """Feed the queue from the pipe until `stop` or the pipe closes, then close the queue."""
    while True:
        try:
            meta, arrays = decode(conn.recv())
        except (EOFError, OSError):
            break
        if meta["op"] == "stop":
            break
        if meta["op"] == "cancel":
            server.cancel(str(meta["session_id"]))
        else:
            server.submit(meta, arrays)
    server.queue.close()
