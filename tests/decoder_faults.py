"""Uploads that crash or stall a decoder process, for the isolation tests (imported there)."""

from __future__ import annotations

import os
import time

import numpy as np

from streamer import audio

CRASH = b"CRASH"
HANG = b"HANG"


def decode_or_crash(data: bytes, content_type: str | None, max_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """`audio.decode_speech`, except that a body starting CRASH kills the process as a
    segfaulting FFmpeg would, and one starting HANG never finishes."""
    if data.startswith(CRASH):
        os.abort()
    if data.startswith(HANG):
        time.sleep(3600)
    return audio.decode_speech(data, content_type, max_seconds)
