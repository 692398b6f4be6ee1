"""One synthetic session of bench/scale.py: its speech, its windows and its playout."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamer.core.segmenter import Segmenter
from streamer.units import FPS, MODEL_RATE


def speech(seconds: float, seed: int) -> np.ndarray:
    """Syllables of a voiced tone with short pauses: enough for the segmenter's VAD."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * MODEL_RATE)) / MODEL_RATE
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None)
    pauses = (np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) > -0.8).astype(np.float32)
    voice = np.sin(2 * np.pi * 140 * t) + 0.4 * np.sin(2 * np.pi * 280 * t)
    return (0.3 * syllables * pauses * voice).astype(np.float32)


@dataclass
class Window:
    first_unit: int
    units: int
    sent_at: float
    ready_at: float | None = None
    failed: bool = False
    missed: bool = False


@dataclass
class Stream:
    """One session's live stream and its playout: units play in order at 25 per second from
    the first window's arrival; a window not ready in time stalls playout until it is (a
    missed deadline), and the stream resumes in sync, later by the stall."""

    index: int
    audio: np.ndarray
    lead_s: float
    """Playout starts this long after the first window is ready (the playout lead)."""
    cutter: Segmenter = field(default_factory=Segmenter)
    windows: list[Window] = field(default_factory=list)
    play_start: float | None = None
    shift_s: float = 0.0
    played_windows: int = 0
    cut_units: int = 0

    def scheduled(self, unit: int, now: float) -> float:
        """When that unit plays (guessed from now before playout starts)."""
        start = self.play_start if self.play_start is not None else now + 0.25
        return start + self.shift_s + unit / FPS

    def played(self, now: float) -> int:
        """Units played by `now`: the clock's position, held at the first window not ready."""
        if self.play_start is None:
            return 0
        held = (
            self.windows[self.played_windows].first_unit if self.played_windows < len(self.windows) else self.cut_units
        )
        return min(int((now - self.play_start - self.shift_s) * FPS), held)

    def arrived(self) -> None:
        """Play out the windows that are ready, in order, counting stalls."""
        while self.played_windows < len(self.windows):
            w = self.windows[self.played_windows]
            if w.ready_at is None:
                return
            if w.first_unit == 0:
                self.play_start = w.ready_at + self.lead_s
            due = self.scheduled(w.first_unit, w.ready_at)
            if w.failed or w.ready_at > due:
                w.missed = w.first_unit > 0
                self.shift_s += max(0.0, w.ready_at - due)
            self.played_windows += 1
