"""A viewer's microphone: the audio m-line of its offer, and the track the server listens to.

An offer whose audio section sends (`sendrecv`, or `sendonly`) carries a microphone: the
session answers `sendrecv` (the avatar's voice still goes out) and its frames, resampled to
16 kHz mono, go to the session's `Listener`. Offers without one are answered as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import RTCRtpReceiver, sdp
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from streamer.core.conversation import Conversation
from streamer.core.events import Event
from streamer.voice.control import ReplyControl
from streamer.voice.listener import Listener
from streamer.voice.services import VoiceServices
from streamer.voice.vad import RATE
from streamer.webrtc import hooks

log = logging.getLogger(__name__)

_ANSWER = {"sendrecv": "sendrecv", "sendonly": "recvonly"}
MIC_HOLD = 0
"""Audio frames the microphone's receiver holds back: none (`PacketFrames`). aiortc's 4 (80 ms)
do not help (a lost packet stalls the buffer whatever it holds) and delay turn ends and barge-in."""


class PacketFrames(JitterBuffer):
    """An audio jitter buffer that holds nothing: every Opus packet is a whole frame, given out as
    it arrives (aiortc's own waits for the next packet, 20 ms at least, to see where a frame
    ends). A packet a little older than the newest seen, or the same, is dropped: the decoder is
    past it; one `RESYNC` or more behind is a sender that started its numbers again."""

    RESYNC = 100
    """aiortc's own jitter buffer starts again past the same misorder (`MAX_MISORDER`)."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._newest: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._newest is not None and 0 <= (self._newest - seq) % 0x10000 < self.RESYNC:
            return False, None
        self._newest = seq
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]


def audio_direction(offer: sdp.SessionDescription) -> str:
    """Our audio transceiver's direction for this offer: receive too when it sends a microphone."""
    for media in offer.media:
        if media.kind == "audio":
            return _ANSWER.get(media.direction or "", "sendonly")
    return "sendonly"


def hold_less(receiver: RTCRtpReceiver, frames: int = MIC_HOLD) -> None:
    """Give an audio receiver a jitter buffer that holds back `frames` frames (0: `PacketFrames`);
    call before any packet arrives. An aiortc without the buffer where we expect it keeps its own."""
    name = hooks.RECEIVER_JITTER_BUFFER
    buffer = getattr(receiver, name, None)
    if not isinstance(buffer, JitterBuffer):
        log.warning("aiortc's audio jitter buffer is not where expected: the receiver keeps its default")
        return
    held = PacketFrames(buffer.capacity) if frames == 0 else JitterBuffer(buffer.capacity, prefetch=frames)
    setattr(receiver, name, held)


class Microphone:
    def __init__(
        self,
        conversation: Conversation,
        voice: VoiceServices,
        emit: Callable[[Event], None],
        reply: Callable[[], ReplyControl | None],
    ) -> None:
        self._conversation = conversation
        self._voice = voice
        self._emit = emit
        self._reply = reply
        self.listener: Listener | None = None
        self._task: asyncio.Task[None] | None = None

    def attach(self, track: Any) -> None:
        """Listen to `track` (the viewer's audio) until it ends."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._read(track), name="microphone")

    async def _read(self, track: Any) -> None:
        """A listener starts with the first audio (a page may offer a microphone line and send
        nothing on it until the user presses Talk: such a session costs nothing)."""
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        pause_s = self._voice.settings.turn_end_silence_ms / 1000
        while True:
            try:
                async with asyncio.timeout(pause_s):
                    frame = await track.recv()
            except TimeoutError:  # nothing for a pause's length: the track stopped sending
                if self.listener is not None:
                    await self.listener.microphone_stopped()
                continue
            except MediaStreamError:
                return
            if self.listener is None:
                self.listener = Listener(self._conversation, self._voice, self._emit, self._reply)
                log.info("session %s: listening to the viewer's microphone", self._conversation.id)
            for out in resampler.resample(frame):
                await self.listener.feed(out.to_ndarray().reshape(-1).astype(np.int16))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.listener is not None:
            await self.listener.close()
