"""Playout: each clock tick plays one unit, a video frame's face crop with its 1,920 audio samples.

Audio and video of a unit are decided together, here and only here, so they are never split:
a speech unit whose crop is not rendered yet is not played half; the tick shows the face
still and plays silence (a stall) and the utterance resumes in sync on a later tick.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from streamer.media.buffer import Samples
from streamer.units import OUT_SAMPLES_PER_UNIT

SILENCE = np.zeros(OUT_SAMPLES_PER_UNIT, dtype=np.int16)
SILENCE.setflags(write=False)

Event = dict[str, object]


@dataclass(frozen=True)
class Unit:
    tick: int
    position: int
    """Template loop position shown."""
    crop: np.ndarray | None
    """Rendered 256×256 face crop, or None for the template's own frame."""
    audio: np.ndarray
    """int16 [1920]: 48 kHz mono audio that plays during this frame."""
    kind: str
    """`welcome`, `speech`, `idle` or `stall`."""
    utterance_id: str | None = None


@dataclass
class Window:
    """A run of units rendered together; `crops` arrive from the render pool."""

    first_unit: int
    units: int
    crops: np.ndarray | None = None
    failed: bool = False
    """Rendering failed: its units play their audio over the template's own frame."""

    @property
    def ready(self) -> bool:
        return self.crops is not None or self.failed


class Utterance:
    """One piece of speech: its 48 kHz audio, its render windows and how far playout got."""

    def __init__(self, utterance_id: str, epoch: int, kind: str = "speech") -> None:
        self.id = utterance_id
        self.epoch = epoch
        self.kind = kind
        self.windows: list[Window] = []
        self.base_position: int | None = None
        self.total_units: int | None = None
        """Known once the audio has ended."""
        self.played = 0
        self._audio = Samples(np.int16)
        self._window_of_unit: list[int] = []

    @property
    def ended(self) -> bool:
        return self.total_units is not None

    @property
    def known_units(self) -> int:
        return len(self._window_of_unit)

    @property
    def finished(self) -> bool:
        return self.ended and self.played >= (self.total_units or 0)

    def add_audio(self, samples: np.ndarray) -> None:
        self._audio.append(samples.astype(np.int16, copy=False))

    def has_audio(self, k: int) -> bool:
        """Whether unit k's 48 kHz audio is all here (the tail of an ended utterance is padded)."""
        return self.ended or len(self._audio) >= (k + 1) * OUT_SAMPLES_PER_UNIT

    def add_window(self, window: Window) -> None:
        if window.first_unit != self.known_units:
            raise ValueError("windows must tile the utterance in order")
        self.windows.append(window)
        self._window_of_unit.extend([len(self.windows) - 1] * window.units)

    def end(self) -> None:
        """No more audio or windows will come."""
        self.total_units = self.known_units

    def unit_audio(self, k: int) -> np.ndarray:
        chunk = self._audio.view[k * OUT_SAMPLES_PER_UNIT : (k + 1) * OUT_SAMPLES_PER_UNIT].copy()
        if chunk.shape[0] < OUT_SAMPLES_PER_UNIT:
            chunk = np.concatenate([chunk, SILENCE[: OUT_SAMPLES_PER_UNIT - chunk.shape[0]]])
        return chunk

    def window_of(self, k: int) -> Window | None:
        return self.windows[self._window_of_unit[k]] if k < self.known_units else None

    @property
    def queued_seconds(self) -> float:
        total = self.total_units if self.ended else self.known_units
        return max(0, total - self.played) / 25.0


@dataclass
class PlayoutCounters:
    ticks: int = 0
    speech_units: int = 0
    idle_units: int = 0
    stalls: int = 0
    """Ticks where the next unit's audio was known but its crop not rendered yet."""
    starved: int = 0
    """Ticks where a started streaming utterance had no audio yet (the source is slow)."""
    failed_units: int = 0


class Playout:
    """The per-session unit sequencer: welcome, then queued utterances, idle in between."""

    def __init__(self, on_event: Callable[[Event], None], lead_units: int = 4) -> None:
        self._on_event = on_event
        self._lead_units = lead_units
        self._queue: deque[Utterance] = deque()
        self.position = -1
        """Loop position of the last unit played."""
        self.counters = PlayoutCounters()

    @property
    def state(self) -> str:
        if not self._queue:
            return "idle"
        head = self._queue[0]
        if head.kind == "welcome":
            return "welcome"
        return "speaking" if head.played > 0 else "idle"

    @property
    def queued_seconds(self) -> float:
        return sum(u.queued_seconds for u in self._queue)

    @property
    def current(self) -> Utterance | None:
        return self._queue[0] if self._queue else None

    def enqueue(self, utterance: Utterance) -> None:
        self._queue.append(utterance)

    def assign_base(self, utterance: Utterance) -> bool:
        """Give `utterance` its first loop position once every utterance before it has ended.

        Positions must be known before rendering (the renderer draws the template frame at each
        position), so speech continues the loop where the previous utterance stops.
        """
        if utterance.base_position is not None:
            return True
        start = self.position + 1 + self._lead_units
        for earlier in self._queue:
            if earlier is utterance:
                break
            if not earlier.ended or earlier.base_position is None:
                return False
            start = max(start, earlier.base_position + (earlier.total_units or 0))
        utterance.base_position = start
        return True

    def interrupt(self) -> list[Event]:
        """Drop everything queued; the next tick is idle. Returns the events it emitted."""
        events: list[Event] = []
        while self._queue:
            dropped = self._queue.popleft()
            event: Event = {
                "type": "interrupted",
                "utterance_id": dropped.id,
                "position_s": round(dropped.played / 25.0, 3),
            }
            events.append(event)
            self._on_event(event)
        return events

    def tick(self) -> Unit:
        n = self.counters.ticks
        self.counters.ticks += 1
        while self._queue and self._queue[0].finished:
            empty = self._queue.popleft()  # a stream that ended before any audio came
            self._on_event({"type": "speaking_ended", "utterance_id": empty.id, "tick": n, "duration_s": 0.0})
        head = self._queue[0] if self._queue else None
        if head is None or head.base_position is None:
            return self._idle(n)
        k = head.played
        window = head.window_of(k)
        if window is None or not window.ready or not head.has_audio(k):
            if k == 0:
                return self._idle(n)
            if window is None or not head.has_audio(k):
                self.counters.starved += 1
            else:
                self.counters.stalls += 1
            return Unit(n, head.base_position + k, None, SILENCE, "stall", head.id)
        return self._play(n, head, k, window)

    def _idle(self, n: int) -> Unit:
        self.position += 1
        self.counters.idle_units += 1
        return Unit(n, self.position, None, SILENCE, "idle")

    def _play(self, n: int, head: Utterance, k: int, window: Window) -> Unit:
        assert head.base_position is not None
        if k == 0:
            self._on_event({"type": "speaking_started", "utterance_id": head.id, "tick": n})
        crop = None
        if window.crops is not None:
            crop = window.crops[k - window.first_unit]
        else:
            self.counters.failed_units += 1
        head.played += 1
        self.position = head.base_position + k
        self.counters.speech_units += 1
        unit = Unit(n, self.position, crop, head.unit_audio(k), head.kind, head.id)
        if head.finished:
            self._queue.popleft()
            self._on_event(
                {
                    "type": "speaking_ended",
                    "utterance_id": head.id,
                    "tick": n,
                    "duration_s": round(head.played / 25.0, 3),
                }
            )
        return unit
