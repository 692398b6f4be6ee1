"""The real inputs bench/fuzz.py mutates: an SDP offer and a valid body of each accepted audio type."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

from bench import audio_layouts


def _tone(seconds: float = 0.3, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _encode(fmt: str, codec: str, rate: int) -> bytes | None:
    """A short tone in `fmt`/`codec`, or None when this FFmpeg has no such encoder."""
    out = io.BytesIO()
    try:
        with av.open(out, "w", format=fmt) as container:
            stream = container.add_stream(codec, rate=rate)
            stream.layout = "mono"
            samples = _tone(0.3, rate)
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    except (av.FFmpegError, ValueError, KeyError):
        return None
    return out.getvalue()


def audio_corpus() -> dict[str, bytes]:
    """Content type → a real, valid body of that type."""
    corpus: dict[str, bytes] = {}
    for ctype, fmt, codec, rate in (
        ("audio/wav", "wav", "pcm_s16le", 16000),
        ("audio/flac", "flac", "flac", 16000),
        ("audio/ogg", "ogg", "libopus", 48000),
        ("audio/webm", "webm", "libopus", 48000),
        ("audio/mpeg", "mp3", "libmp3lame", 44100),
        ("audio/mp4", "mp4", "aac", 44100),
    ):
        data = _encode(fmt, codec, rate)
        if data:
            corpus[ctype] = data
    for case in audio_layouts.cases():  # every container/codec/channel layout PyAV writes
        corpus[f"{case.content_type};case={case.name.replace('/', '-')}"] = case.data
    pcm = (_tone() * 32767).astype("<i2")
    corpus["audio/pcm;rate=16000"] = pcm.tobytes()
    corpus["audio/L16;rate=16000"] = pcm.astype(">i2").tobytes()
    return corpus


@dataclass(frozen=True)
class Corpus:
    """Real inputs to mutate: an SDP offer and a valid body of each accepted audio type."""

    offer: str
    audio: dict[str, bytes]

    def __repr__(self) -> str:  # hypothesis prints the strategy's arguments
        return f"Corpus({len(self.offer)}-byte offer, {sorted(self.audio)})"
