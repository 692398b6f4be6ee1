"""Uploads in every container, codec and channel layout this PyAV can write (the fuzz corpus).

An 8-channel WAV once made the decoder segfault (a planar frame with an unnamed layout): each
case here is decoded by the suite (tests/unit/test_audio_layouts.py) and sent by bench/fuzz.py.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import av
import numpy as np

LEVEL = 0.3
"""Every channel carries the same tone at this peak, so a right downmix keeps it."""
LAYOUTS = ("mono", "stereo", "2.1", "quad", "5.0", "5.1", "6.1", "7.1")
CODECS = (
    ("audio/wav", "wav", "pcm_s16le", 16000),
    ("audio/wav", "wav", "pcm_f32le", 16000),
    ("audio/flac", "flac", "flac", 16000),
    ("audio/ogg", "ogg", "libopus", 48000),
    ("audio/ogg", "ogg", "libvorbis", 44100),
    ("audio/webm", "webm", "libopus", 48000),
    ("audio/mp4", "mp4", "aac", 44100),
    ("audio/mpeg", "mp3", "libmp3lame", 44100),
    ("application/octet-stream", "matroska", "pcm_s16le", 16000),
)
UNNAMED_CHANNELS = (3, 8, 9, 16)
"""Raw WAVs with no channel mask: FFmpeg names no layout. More than 8 channels is refused."""


@dataclass(frozen=True)
class Case:
    name: str
    content_type: str
    channels: int
    data: bytes


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (LEVEL * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def encoded(fmt: str, codec: str, rate: int, layout: str, seconds: float = 0.3) -> bytes | None:
    """A tone on every channel of `layout`, or None when this FFmpeg cannot write the combination."""
    out = io.BytesIO()
    try:
        with av.open(out, "w", format=fmt) as container:
            stream = container.add_stream(codec, rate=rate, layout=layout)
            channels = stream.layout.nb_channels
            samples = np.repeat(tone(seconds, rate)[:, None], channels, axis=1).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    except (av.FFmpegError, ValueError, KeyError, TypeError):
        return None
    return out.getvalue()


def unnamed_wav(channels: int, rate: int = 16000, seconds: float = 0.05) -> bytes:
    """A plain PCM WAV of `channels` channels without a channel mask (written by hand)."""
    pcm = np.repeat((tone(seconds, rate) * 32767).astype("<i2")[:, None], channels, axis=1).tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def cases() -> list[Case]:
    """Every combination this PyAV writes, then the unnamed-layout WAVs."""
    out = []
    for content_type, fmt, codec, rate in CODECS:
        for layout in LAYOUTS:
            data = encoded(fmt, codec, rate, layout)
            if data is not None:
                channels = av.AudioLayout(layout).nb_channels
                out.append(Case(f"{fmt}/{codec}/{layout}", content_type, channels, data))
    for channels in UNNAMED_CHANNELS:
        out.append(Case(f"wav/unnamed/{channels}ch", "audio/wav", channels, unnamed_wav(channels)))
    return out
