"""An encoder's bitrate, frame size and keyframes as its session's ladder (or a fixed band) sets them.

Mixed into our aiortc encoders (webrtc/encoding.py): aiortc's RTP sender sets `target_bitrate`
from REMB and passes `force_keyframe` on PLI; the session's ladder is the encoder's own, given
when the session builds it (webrtc/hooks.py).
"""

from __future__ import annotations

import time
from typing import Protocol

import av
from av.video.codeccontext import VideoCodecContext

from streamer.webrtc.ladder import Ladder

BAND = 0.05
"""REMB may move the bitrate only this far from the target: below aiortc's 10 % rebuild step."""
KEYFRAME_GAP_S = 0.5
"""Keyframe requests (PLI) closer than this to the last keyframe are served by that one: a
viewer that loses packets asks again and again, and each keyframe is many packets."""


class RateSettings(Protocol):
    def clamp(self, bitrate: int) -> int: ...


class ClampedBitrate:
    """`target_bitrate` as aiortc's encoders expose it (REMB sets it).

    With a ladder (the session's) the bitrate and frame size are the ladder step's and REMB goes
    to the ladder; without one the bitrate is held within BAND of the target.
    """

    _settings: RateSettings
    _bitrate: int
    _ladder: Ladder | None = None
    _keyframes = 0
    _keyframe_asked = False
    _keyframe_at = -1.0
    _keyframe_pending = False

    def _opened(self) -> None:
        """A fresh codec context: its first frame is a keyframe."""
        self._keyframe_at = time.monotonic()

    def _keyframe(self, requested: bool) -> bool:
        """Whether this frame is a keyframe: asked for (PLI, or the ladder after lossy
        congestion) and not within KEYFRAME_GAP_S of the last one; asks inside the gap wait."""
        now = time.monotonic()
        self._keyframe_pending = self._keyframe_pending or requested or self._keyframe_asked
        if self._keyframe_pending and now - self._keyframe_at >= KEYFRAME_GAP_S:
            self._keyframe_at, self._keyframe_pending = now, False
            return True
        return False

    @property
    def target_bitrate(self) -> int:
        return self._bitrate

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        if self._ladder is not None:
            self._ladder.on_remb(bitrate)
        else:
            self._bitrate = self._settings.clamp(bitrate)

    def _follow(self, frame: av.VideoFrame) -> av.VideoFrame:
        """`frame` at its ladder step's size, with `_bitrate` set to the step's bitrate (and a
        keyframe when the ladder asks for one)."""
        ladder = self._ladder
        if ladder is None:
            return frame
        self._keyframe_asked = self._keyframes != ladder.keyframes
        self._keyframes = ladder.keyframes
        step = ladder.step
        self._bitrate = step.bitrate
        width, height = step.size(frame.width, frame.height)
        if (width, height) != (frame.width, frame.height):
            frame = frame.reformat(width=width, height=height)
        return frame

    def _stale(self, codec: VideoCodecContext | None, frame: av.VideoFrame) -> bool:
        """The open context no longer fits: another size, or another ladder step's bitrate."""
        moved = self._ladder is not None and codec is not None and codec.bit_rate != self._bitrate
        return codec is not None and (frame.width != codec.width or frame.height != codec.height or moved)

    def _sent(self, nbytes: int) -> None:
        if self._ladder is not None:
            self._ladder.on_sent(nbytes)
