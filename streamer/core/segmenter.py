"""Cut one utterance into render windows of whole 40 ms units (640 samples at 16 kHz).

The first window is short so the first lip-synced frame comes quickly; the next ones grow
(each as long as all before it, a ramp) so each is rendered while the earlier ones play, then
windows aim at `window_s` and end in a pause found by webrtcvad, so a window boundary does not
fall in the middle of a syllable. Decisions depend only on audio up to a fixed distance past the window,
so feeding audio in any chunking gives the same windows as `split` on the whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import webrtcvad

from streamer.audio import to_int16
from streamer.core.buffer import Samples
from streamer.errors import BadInput
from streamer.units import FPS, MODEL_RATE, MODEL_SAMPLES_PER_UNIT

UNIT = MODEL_SAMPLES_PER_UNIT
VAD_FRAME = MODEL_RATE * 30 // 1000  # 480 samples: webrtcvad's 30 ms frame
_SEARCH = (0.6, 1.5)
"""Cut search range around the target length, as fractions of it."""
_CONTEXT_UNITS = 2
"""Audio past the last candidate cut needed to judge it (half a unit + one VAD frame < 2 units)."""


@dataclass
class Window:
    """A run of units rendered together; the segmenter cuts it, the render pool fills `crops`."""

    first_unit: int
    units: int
    crops: np.ndarray | None = field(default=None, compare=False, repr=False)
    """[units, 256, 256, 3] uint8 face crops, once rendered."""
    failed: bool = field(default=False, compare=False)
    """Rendering failed: its units play their audio over the template's own frame."""

    @property
    def ready(self) -> bool:
        return self.crops is not None or self.failed


class Segmenter:
    """Streaming cutter: `push` audio as it arrives, `finish` once the utterance ends.

    The audio is kept once, in `audio` (an utterance passes its own buffer in).
    """

    def __init__(
        self,
        first_window_s: float = 0.2,
        window_s: float = 1.0,
        lookahead_units: int = 2,
        vad_mode: int = 2,
        audio: Samples | None = None,
    ) -> None:
        if not 0 < first_window_s <= window_s or lookahead_units < 0:
            raise BadInput("windows need 0 < first_window_s <= window_s and lookahead_units >= 0")
        self.first_units = max(1, round(first_window_s * FPS))
        self.target_units = max(1, round(window_s * FPS))
        self.lookahead_units = lookahead_units
        self._min_units = max(1, round(self.target_units * _SEARCH[0]))
        self._max_units = max(self._min_units, round(self.target_units * _SEARCH[1]))
        self._vad = webrtcvad.Vad(vad_mode)
        self.audio = Samples(np.float32) if audio is None else audio
        self._speech: list[bool] = []  # one flag per complete VAD frame
        self._next = 0  # first unit of the next window
        self._finished = False

    @property
    def total_units(self) -> int:
        """Units of audio received so far, a partial last unit counted (padded at finish)."""
        return -(-len(self.audio) // UNIT)

    def push(self, audio16k: np.ndarray) -> list[Window]:
        """Append 16 kHz float audio; return the windows whose audio (+ lookahead) is now known."""
        if self._finished:
            raise BadInput("audio pushed after the utterance finished")
        self.audio.append(np.asarray(audio16k, np.float32).reshape(-1))
        self._run_vad()
        known = len(self.audio) // UNIT
        windows = []
        while True:
            if self._next == 0:
                if known < self.first_units + self.lookahead_units:
                    break
                windows.append(self._take(self.first_units))
                continue
            ramp = self._ramp_units()
            if ramp:
                if known < self._next + ramp + self.lookahead_units:
                    break
                windows.append(self._take(ramp))
                continue
            horizon = self._max_units + max(self.lookahead_units, _CONTEXT_UNITS)
            if known < self._next + horizon:
                break
            windows.append(self._take(self._cut(self._next + self._max_units)))
        return windows

    def cut_available(self) -> list[Window]:
        """One window of all the audio known now (less the look-ahead), ahead of the rules.

        For a live stream whose playout is about to run dry: audio that arrives in real time
        never builds the lead a full window needs, so small windows keep the lips going.
        """
        units = len(self.audio) // UNIT - self.lookahead_units - self._next
        if self._finished or self._next == 0 or units < 1:
            return []
        return [self._take(units)]

    def finish(self) -> list[Window]:
        """Pad the tail to a whole unit and return the remaining windows."""
        if self._finished:
            return []
        self._finished = True
        total = self.total_units
        self.audio.pad_to(total * UNIT)
        self._run_vad(final=True)  # zeros past the end, so VAD can judge the last cuts
        windows = []
        while self._next < total:
            left = total - self._next
            if self._next == 0:
                size = min(self.first_units, left)
            elif self._ramp_units():
                size = min(self._ramp_units(), left)
            elif left <= self._max_units:
                size = left
            else:
                size = self._cut(total)
            windows.append(self._take(size))
        return windows

    def _ramp_units(self) -> int:
        """Length of the next window while still ramping up (0 once windows are full length)."""
        size = max(self.first_units, self._next)
        return size if size < self._min_units else 0

    def _take(self, units: int) -> Window:
        window = Window(self._next, units)
        self._next += units
        return window

    def _cut(self, limit: int) -> int:
        """Length of the window starting at `self._next`: the quietest pause in the search
        range, ties to the one nearest the target; the target itself when there is no pause."""
        start = self._next
        target = start + self.target_units
        best: tuple[float, int, int] | None = None
        for boundary in range(start + self._min_units, min(start + self._max_units, limit) + 1):
            if not self._pause_at(boundary):
                continue
            key = (self._energy_at(boundary), abs(boundary - target), boundary)
            best = key if best is None or key < best else best
        end = min(target, limit) if best is None else best[2]
        return end - start

    def _pause_at(self, boundary: int) -> bool:
        """No VAD frame within half a unit of the boundary holds speech."""
        centre = boundary * UNIT
        first = max(0, (centre - UNIT // 2) // VAD_FRAME)
        last = (centre + UNIT // 2 - 1) // VAD_FRAME
        return not any(self._speech[first : last + 1])

    def _energy_at(self, boundary: int) -> float:
        centre = boundary * UNIT
        around = self.audio.view[max(0, centre - UNIT // 2) : centre + UNIT // 2]
        return float(np.mean(np.square(around, dtype=np.float64))) if len(around) else 0.0

    def _run_vad(self, final: bool = False) -> None:
        """Judge each whole VAD frame; at the end also those that run past it, zero-padded."""
        size = len(self.audio)
        while (len(self._speech) + 1) * VAD_FRAME <= size or (final and len(self._speech) * VAD_FRAME <= size):
            start = len(self._speech) * VAD_FRAME
            frame = np.zeros(VAD_FRAME, np.float32)
            part = self.audio.view[start : start + VAD_FRAME]
            frame[: len(part)] = part
            self._speech.append(self._vad.is_speech(to_int16(frame).tobytes(), MODEL_RATE))


def split(audio16k: np.ndarray, first_window_s: float = 0.2, window_s: float = 1.0) -> list[Window]:
    """Windows for a whole upload: the same as pushing it all and finishing."""
    segmenter = Segmenter(first_window_s, window_s)
    return segmenter.push(audio16k) + segmenter.finish()
