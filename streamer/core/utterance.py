"""One piece of speech: its audio at both rates, its render windows, and how far it has played.

The 16 kHz audio (what renderers see) lives once, in the segmenter's buffer; the 48 kHz audio
(what viewers hear) beside it. Playout reads units from here; the conversation core cuts
windows and sends them to the render pool from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from streamer.core.buffer import Samples
from streamer.core.segmenter import Segmenter, Window
from streamer.units import FPS, OUT_SAMPLES_PER_UNIT

if TYPE_CHECKING:
    from streamer.avatar.prepared import WelcomeClip

SILENCE = np.zeros(OUT_SAMPLES_PER_UNIT, dtype=np.int16)
SILENCE.setflags(write=False)
WELCOME = "welcome"
"""The id (and kind) of the welcome clip's utterance."""


class Utterance:
    def __init__(
        self,
        utterance_id: str,
        epoch: int,
        kind: str = "speech",
        cutter: Segmenter | None = None,
    ) -> None:
        self.id = utterance_id
        self.epoch = epoch
        """The session's epoch when it was queued; an interrupt makes it stale."""
        self.kind = kind
        """`speech` or `welcome`."""
        self.cutter = cutter
        """Cuts windows as 16 kHz audio arrives; None when windows are given whole (welcome)."""
        self.model_audio: Samples = cutter.audio if cutter is not None else Samples(np.float32)
        self.out_audio = Samples(np.int16)
        self.windows: list[Window] = []
        self.base_position: int | None = None
        """Template loop position of unit 0, given once the utterance before it has ended."""
        self.total_units: int | None = None
        """Known once the audio has ended."""
        self.played = 0
        self.first_audio_at: float | None = None
        """Monotonic time the first audio arrived (for the latency figures)."""
        self._window_of_unit: list[int] = []

    @property
    def ended(self) -> bool:
        return self.total_units is not None

    @property
    def known_units(self) -> int:
        """Units covered by windows so far."""
        return len(self._window_of_unit)

    @property
    def finished(self) -> bool:
        return self.ended and self.played >= (self.total_units or 0)

    @property
    def queued_seconds(self) -> float:
        total = self.total_units if self.total_units is not None else self.known_units
        return max(0, total - self.played) / FPS

    def add_audio(self, out48k: np.ndarray, model16k: np.ndarray | None = None) -> list[Window]:
        """Append audio at the output rate (int16) and, for speech, the model rate; returns the
        windows that the new 16 kHz audio completes."""
        if len(out48k):
            self.out_audio.append(out48k.astype(np.int16, copy=False))
        if self.cutter is None or model16k is None or not len(model16k):
            return []
        return self._add_windows(self.cutter.push(model16k))

    def cut_available(self) -> list[Window]:
        """A window of all audio known now, ahead of the segmenter's rules (a live stream)."""
        return self._add_windows(self.cutter.cut_available()) if self.cutter is not None else []

    def add_window(self, window: Window) -> None:
        if window.first_unit != self.known_units:
            raise ValueError("windows must tile the utterance in order")
        self.windows.append(window)
        self._window_of_unit.extend([len(self.windows) - 1] * window.units)

    def end(self) -> list[Window]:
        """No more audio will come: cut the last windows (the 16 kHz tail padded to a unit)."""
        windows = self._add_windows(self.cutter.finish()) if self.cutter is not None else []
        self.total_units = self.known_units
        return windows

    def has_audio(self, k: int) -> bool:
        """Whether unit k's 48 kHz audio is all here (the tail of an ended utterance is padded)."""
        return self.ended or len(self.out_audio) >= (k + 1) * OUT_SAMPLES_PER_UNIT

    def unit_audio(self, k: int) -> np.ndarray:
        chunk = self.out_audio.view[k * OUT_SAMPLES_PER_UNIT : (k + 1) * OUT_SAMPLES_PER_UNIT].copy()
        if chunk.shape[0] < OUT_SAMPLES_PER_UNIT:
            chunk = np.concatenate([chunk, SILENCE[: OUT_SAMPLES_PER_UNIT - chunk.shape[0]]])
        return chunk

    def window_of(self, k: int) -> Window | None:
        return self.windows[self._window_of_unit[k]] if k < self.known_units else None

    def _add_windows(self, windows: list[Window]) -> list[Window]:
        for window in windows:
            self.add_window(window)
        return windows


def welcome_utterance(clip: WelcomeClip, epoch: int) -> Utterance:
    """The template's welcome clip as an utterance: its audio, one rendered window, its own positions."""
    welcome = Utterance(WELCOME, epoch, kind="welcome")
    welcome.add_audio(clip.audio)
    welcome.add_window(Window(0, clip.units, clip.crops))
    welcome.end()
    welcome.base_position = int(clip.positions[0])
    return welcome
