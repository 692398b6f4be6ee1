"""The pump: one clock per session drives playout and feeds both aiortc tracks.

Each tick the pump takes one unit from playout, composes its video frame (I420, as the encoders
take it) and hands the frame and its two 20 ms audio packets to the tracks. A unit without a
crop shows a cached template frame: it is wrapped without a copy on the loop itself; a unit with
a crop is composed in an executor thread. Both tracks stamp pts from the same unit counter
(video n × 3600 at 90 kHz, audio n × 1920 at 48 kHz), so the sender never drifts.

When the session's audio is Opus (`encode_audio`), the pump encodes it too, in the same step
as the unit's video (on the loop for silence, whose packet is cached, and in the compose thread
for speech), and the audio track carries packets: aiortc only packs them, with no executor hop
per 20 ms packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from streamer.core.clock import Clock
from streamer.core.playout import Unit
from streamer.units import FPS, OUT_RATE, OUT_SAMPLES_PER_PACKET, OUT_SAMPLES_PER_UNIT, VIDEO_CLOCK
from streamer.webrtc.opus import LeanOpusEncoder

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = fractions.Fraction(1, OUT_RATE)
QUEUE_UNITS = 8
"""Units a track may lag behind the pump before its oldest frames are dropped."""
CATCH_UP_S = 0.5
"""If the pump falls this far behind the clock (a paused loop), it resets its schedule."""

Compose = Callable[[Unit], np.ndarray]
"""A unit's video frame as I420 ([H * 3 / 2, W] uint8), a cached read-only array when the unit has
no crop."""
NextUnit = Callable[[], Unit]


class PumpedTrack(MediaStreamTrack):
    """A track whose frames come from the pump; `recv` starts the pump on first use."""

    def __init__(self, kind: str, pump: MediaPump) -> None:
        super().__init__()
        self.kind = kind
        self._pump = pump
        self._queue: asyncio.Queue[av.frame.Frame | av.Packet[Any]] = asyncio.Queue()
        self.dropped = 0

    def put(self, frame: av.frame.Frame | av.Packet[Any]) -> None:
        limit = QUEUE_UNITS * (1 if self.kind == "video" else 2)
        while self._queue.qsize() >= limit:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(frame)

    async def recv(self) -> av.frame.Frame | av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        self._pump.start()
        return await self._queue.get()


class MediaPump:
    def __init__(
        self,
        next_unit: NextUnit,
        compose: Compose,
        clock: Clock,
        on_failure: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        """`next_unit` gives the unit of each tick (the conversation's `tick`); `on_failure(task
        name, exception)` hears of a pump that died (the stream would freeze)."""
        self._next_unit = next_unit
        self._compose = compose
        self._clock = clock
        self._on_failure = on_failure
        self.video = PumpedTrack("video", self)
        self.audio = PumpedTrack("audio", self)
        self._opus: LeanOpusEncoder | None = None
        self._task: asyncio.Task[None] | None = None

    def encode_audio(self) -> None:
        """The audio track carries Opus packets encoded here, not PCM frames for aiortc to encode."""
        self._opus = LeanOpusEncoder()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="media-pump")
            self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error("media pump failed", exc_info=exc)
            if self._on_failure is not None:
                self._on_failure(task.get_name(), exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.video.stop()
        self.audio.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = self._clock.now()
        n = 0
        while True:
            due = start + n / FPS
            await self._clock.sleep_until(due)
            late = self._clock.now() - due
            if late > CATCH_UP_S:
                log.warning("media pump %.0f ms late; resetting its schedule", late * 1000)
                start = self._clock.now() - n / FPS
            unit = self._next_unit()
            try:
                if unit.crop is None:
                    frame, audio = self._media(unit, n)
                else:
                    frame, audio = await loop.run_in_executor(None, self._media, unit, n)
            except Exception:
                log.exception("composing unit %d failed; showing the template frame", n)
                frame, audio = self._media(replace(unit, crop=None), n)
            self.video.put(frame)
            for packet in audio:
                self.audio.put(packet)
            n += 1

    def _media(self, unit: Unit, n: int) -> tuple[av.VideoFrame, list[av.AudioFrame] | list[av.Packet[Any]]]:
        return self._video_frame(unit, n), self._audio(unit, n)

    def _video_frame(self, unit: Unit, n: int) -> av.VideoFrame:
        frame = av.VideoFrame.from_numpy_buffer(self._compose(unit), format="yuv420p")
        frame.pts = n * (VIDEO_CLOCK // FPS)
        frame.time_base = VIDEO_TIME_BASE
        return frame

    def _audio(self, unit: Unit, n: int) -> list[av.AudioFrame] | list[av.Packet[Any]]:
        if self._opus is None:
            return [_audio_frame(samples, pts) for samples, pts in _packet_parts(unit, n)]
        return [packet for samples, pts in _packet_parts(unit, n) for packet in self._opus.packets(samples, pts)]


def _packet_parts(unit: Unit, n: int) -> list[tuple[np.ndarray, int]]:
    """Unit n's audio as 20 ms parts, each with its pts at 48 kHz."""
    return [
        (unit.audio[at : at + OUT_SAMPLES_PER_PACKET], n * OUT_SAMPLES_PER_UNIT + at)
        for at in range(0, OUT_SAMPLES_PER_UNIT, OUT_SAMPLES_PER_PACKET)
    ]


def _audio_frame(samples: np.ndarray, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = OUT_RATE
    frame.pts = pts
    frame.time_base = AUDIO_TIME_BASE
    return frame
