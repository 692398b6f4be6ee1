"""Uploads are decoded in child processes: a hostile container that crashes FFmpeg takes down
a decoder process, never the server. A crashed pool is replaced and the upload gets a 400."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import numpy as np

from streamer import audio
from streamer.errors import BadInput
from streamer.lifeline import exit_with_parent
from streamer.memory import tune_malloc

log = logging.getLogger(__name__)
T = TypeVar("T")


def _start_decoder(parent: int) -> None:
    tune_malloc()
    exit_with_parent(parent)


class Decoders:
    """A small pool of spawned decoder processes, started on first use."""

    def __init__(self, processes: int = 2) -> None:
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self.crashes = 0

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._processes,
                mp_context=mp.get_context("spawn"),
                initializer=_start_decoder,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def speech(self, data: bytes, content_type: str | None, max_seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """(48 kHz, 16 kHz) float32 mono of an upload; errors as the decoder raised them."""
        return await self.run(audio.decode_speech, data, content_type, max_seconds)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a decoder process; a process that dies on it gives 400, not a crash."""
        pool = self._executor()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            self.crashes += 1
            log.error("an audio decoder process died (%s); replacing the pool", getattr(fn, "__name__", fn))
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise BadInput("the audio could not be decoded (the decoder crashed on it)") from None

    async def warm(self) -> None:
        """Start the processes now, so the first upload does not wait for their imports."""
        silence = bytes(2 * 1600)
        await self.speech(silence, "audio/pcm;rate=16000", 1.0)

    def close(self) -> None:
        """Stop the processes and wait for them (blocking: run it off the event loop)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
