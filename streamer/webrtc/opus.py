"""Opus for aiortc at a fraction of its cost: mono in, mono out, silence from a cache.

aiortc's own Opus encoder resamples every 20 ms frame to stereo and encodes both channels; its
RTP sender then computes each frame's audio level (RFC 6465) in a pure-Python loop on the event
loop. Our audio is 48 kHz mono in 20 ms frames already, and idle sessions send digital silence,
whose Opus packet is the same few bytes frame after frame: `LeanOpusEncoder` encodes mono with
no resampler and, once the encoder has settled on silence, sends that packet without encoding.
Packets keep flowing every 20 ms (no DTX gaps), so receivers never conceal.
"""

from __future__ import annotations

import fractions
import math
from typing import Any

import av
import numpy as np
from aiortc.codecs.base import Encoder

from streamer.units import OUT_RATE, OUT_SAMPLES_PER_PACKET

BITRATE = 96_000
"""aiortc's own Opus bitrate."""
SETTLE_FRAMES = 5
"""Silent frames encoded for real before the silence packet is reused."""
MIN_LEVEL = -127
AUDIO_TIME_BASE = fractions.Fraction(1, OUT_RATE)
SILENT_PCM = bytes(2 * OUT_SAMPLES_PER_PACKET)


class LeanOpusEncoder(Encoder):
    """aiortc's Opus encoder (it packs what `packets` made, or encodes frames itself), and the
    media pump's: `packets` encodes a session's 20 ms PCM on the caller's thread, so audio needs
    no executor hop per packet and no level computed on the event loop."""

    def __init__(self) -> None:
        self.codec = av.CodecContext.create("libopus", "w")
        self.codec.bit_rate = BITRATE
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.sample_rate = OUT_RATE
        self.codec.time_base = fractions.Fraction(1, OUT_RATE)
        self.codec.options = {"application": "voip"}
        self._silent_run = 0
        self._silence: bytes | None = None
        self.encoded = 0
        self.reused = 0

    def encode(  # type: ignore[override]  # aiortc hands an audio encoder audio frames only
        self, frame: av.AudioFrame, force_keyframe: bool = False
    ) -> tuple[list[bytes], int]:
        if not _mono_20ms(frame):
            raise ValueError(f"LeanOpusEncoder takes 20 ms of 48 kHz mono s16, got {frame}")
        assert frame.pts is not None and frame.time_base is not None, "aiortc stamps every frame"
        timestamp = int(frame.pts * frame.time_base * OUT_RATE)
        return self._encode(bytes(frame.planes[0])[: 2 * OUT_SAMPLES_PER_PACKET], frame), timestamp

    def packets(self, samples: np.ndarray, pts: int) -> list[av.Packet[Any]]:
        """20 ms of int16 mono PCM at 48 kHz as Opus packets stamped `pts` (1/48000 s)."""
        if samples.dtype != np.int16 or samples.shape != (OUT_SAMPLES_PER_PACKET,):
            raise ValueError(f"LeanOpusEncoder takes 20 ms of 48 kHz mono int16, got {samples.dtype} {samples.shape}")
        out = []
        for payload in self._encode(samples.tobytes(), None):
            packet = av.Packet(payload)
            packet.pts, packet.time_base = pts, AUDIO_TIME_BASE
            out.append(packet)
        return out

    def _encode(self, pcm: bytes, frame: av.AudioFrame | None) -> list[bytes]:
        """Opus payloads of one 20 ms of s16 PCM; settled silence reuses its cached packet."""
        silent = pcm == SILENT_PCM  # a memcmp: numpy's any() would drop and retake the GIL
        self._silent_run = self._silent_run + 1 if silent else 0
        if silent and self._silence is not None and self._silent_run > SETTLE_FRAMES:
            self.reused += 1
            return [self._silence]
        if frame is None:
            frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, np.int16).reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = OUT_RATE
        frame.pts = None  # the codec numbers its own packets; the RTP timestamp is ours
        payloads = [bytes(packet) for packet in self.codec.encode(frame)]
        self.encoded += 1
        if silent and self._silent_run == SETTLE_FRAMES and len(payloads) == 1:
            self._silence = payloads[0]
        return payloads

    def pack(self, packet: av.Packet[Any]) -> tuple[list[bytes], int]:
        assert packet.pts is not None and packet.time_base is not None, "the codec stamps every packet"
        return [bytes(packet)], int(packet.pts * packet.time_base * OUT_RATE)


def _mono_20ms(frame: av.AudioFrame) -> bool:
    return (
        frame.format.name == "s16"
        and frame.layout.name == "mono"
        and frame.sample_rate == OUT_RATE
        and frame.samples == OUT_SAMPLES_PER_PACKET
    )


def audio_level_dbov(frame: av.AudioFrame) -> int:
    """RFC 6465's audio level of a frame, as aiortc's `compute_audio_level_dbov`, in numpy."""
    count = frame.samples * len(frame.layout.channels)
    pcm = bytes(frame.planes[0])[: 2 * count]
    if pcm.count(0) == len(pcm):  # silence, without a zeroed buffer to compare with
        return MIN_LEVEL
    samples = np.frombuffer(pcm, np.int16)
    rms = math.sqrt(float(np.dot(samples.astype(np.float64), samples)) / (frame.samples * 32767 * 32767))
    return round(max(MIN_LEVEL, min(0.0, 20 * math.log10(rms))))
