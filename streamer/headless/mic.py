"""A headless viewer's microphone: an aiortc audio track that plays what it is told to say,
in real time, and silence in between (48 kHz mono, 20 ms frames, like a browser's)."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack

from streamer import audio

RATE = 48000
FRAME = 960
"""Samples in a 20 ms frame."""


class MicTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[tuple[np.ndarray, asyncio.Future[float]]] = deque()
        self._offset = 0
        self._pts = 0
        self._start: float | None = None

    def say(self, samples: np.ndarray) -> asyncio.Future[float]:
        """Queue int16 48 kHz samples; the future gives the time their last frame went out."""
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._queue.append((samples.astype(np.int16), done))
        return done

    def say_file(self, path: Path) -> asyncio.Future[float]:
        return self.say(audio.to_int16(audio.decode_file(path, RATE)))

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._pts / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)  # a microphone delivers in real time
        frame = av.AudioFrame.from_ndarray(self._next().reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += FRAME
        return frame

    def _next(self) -> np.ndarray:
        out = np.zeros(FRAME, np.int16)
        filled = 0
        while filled < FRAME and self._queue:
            samples, done = self._queue[0]
            take = samples[self._offset : self._offset + FRAME - filled]
            out[filled : filled + len(take)] = take
            filled += len(take)
            self._offset += len(take)
            if self._offset >= len(samples):
                self._queue.popleft()
                self._offset = 0
                if not done.done():
                    done.set_result(time.monotonic())
        return out
