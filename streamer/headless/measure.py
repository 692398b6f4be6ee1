"""What a headless viewer measures from the stream it received: no transport, only arrays.

Frame arrival times, the audio that arrived, and the mouth motion visible in the frames (the
difference from the idle face).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

ANALYSIS_SIZE = 256
"""Frames are kept as small grey images for the measurements."""


@dataclass
class Received:
    video_times: list[float] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    """Grey ANALYSIS_SIZE² copies of the received frames."""
    audio_times: list[float] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    """int16 mono chunks at `audio_rate`, one per received audio frame."""
    audio_rate: int = 48_000
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    size: tuple[int, int] | None = None

    def audio_between(self, start: float, end: float) -> np.ndarray:
        chunks = [a for t, a in zip(self.audio_times, self.audio, strict=True) if start <= t < end]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


MOTION_QUANTILE = 0.999
"""An open mouth covers a fraction of a percent of the frame: motion is the 99.9th percentile of
the change from the idle face (codec noise on a still face stays under ~10 grey levels there)."""


def mouth_motion(received: Received, start: float, end: float, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times, and how far each frame's most-changed pixels moved from the idle face."""
    times = np.array(received.video_times)
    pick = (times >= start) & (times < end)
    frames = [f for f, p in zip(received.frames, pick, strict=True) if p]
    diff = np.array([np.quantile(np.abs(f.astype(np.int16) - reference), MOTION_QUANTILE) for f in frames])
    return times[pick], diff


def audio_envelope(received: Received, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    times = np.array(received.audio_times)
    pick = (times >= start) & (times < end)
    rms = np.array(
        [np.sqrt(np.mean(a.astype(np.float64) ** 2)) for a, p in zip(received.audio, pick, strict=True) if p]
    )
    return times[pick], rms


def av_offset_ms(received: Received, start: float, end: float, reference: np.ndarray) -> float | None:
    """Lag of mouth motion behind the audio envelope (positive: video late), by cross-correlation."""
    vt, motion = mouth_motion(received, start, end, reference)
    at, envelope = audio_envelope(received, start, end)
    if len(vt) < 25 or len(at) < 50 or motion.std() == 0 or envelope.std() == 0:
        return None
    grid = np.arange(max(vt[0], at[0]), min(vt[-1], at[-1]), 0.01)
    if len(grid) < 100:
        return None
    v = np.interp(grid, vt, motion)
    a = np.interp(grid, at, envelope)
    v, a = (v - v.mean()) / v.std(), (a - a.mean()) / a.std()
    lags = range(-30, 31)
    scores = [np.mean(v[max(0, k) : len(v) + min(0, k)] * a[max(0, -k) : len(a) + min(0, -k)]) for k in lags]
    return float(list(lags)[int(np.argmax(scores))] * 10)


MOTION_THRESHOLD = 20.0
"""Grey levels of change that codec noise on a still face stays below."""


def first_after(times: list[float], values: list[float] | np.ndarray, after: float, threshold: float) -> float | None:
    for t, v in zip(times, values, strict=True):
        if t >= after and v > threshold:
            return t
    return None
