"""Playout: each clock tick plays one unit, a video frame's face crop with its 1,920 audio samples.

Audio and video of a unit are decided together, here and only here, so they are never split:
a speech unit whose crop is not rendered yet is not played half; the tick shows the face
still and plays silence (a stall) and the utterance resumes in sync on a later tick.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamer.core.events import Event, Interrupted, SpeakingEnded, SpeakingStarted
from streamer.core.segmenter import Window
from streamer.core.utterance import SILENCE, Utterance
from streamer.units import FPS


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
class PlayoutCounters:
    ticks: int = 0
    speech_units: int = 0
    idle_units: int = 0
    stalls: int = 0
    """Ticks where the next unit's audio was known but its crop not rendered yet."""
    starved: int = 0
    """Ticks where a started streaming utterance had no audio yet (the source is slow)."""
    failed_units: int = 0
    paused_units: int = 0
    """Ticks held by a pause (the user talking over the answer): idle, the utterance's place kept."""


class Playout:
    """The per-session unit sequencer: welcome, then queued utterances, idle in between."""

    def __init__(self, emit: Callable[[Event], None], lead_units: int = 4) -> None:
        """`emit` hears each utterance start and end; `lead_units` is how far past the
        unit now playing a new utterance's loop positions begin (time to render its first window)."""
        self._emit = emit
        self._lead_units = lead_units
        self._queue: deque[Utterance] = deque()
        self.position = -1
        """Loop position of the last unit played."""
        self.paused = False
        """While set, no speech unit plays: ticks are idle and each utterance keeps its place."""
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
    def holds_speech(self) -> bool:
        """An utterance other than the welcome clip is queued: playing, paused or not started."""
        return any(u.kind != "welcome" for u in self._queue)

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

    def due_in_s(self, utterance: Utterance, unit: int) -> float:
        """Seconds until unit `unit` of `utterance` plays if nothing ahead of it stalls
        (a stream ahead counts only the units known so far: an early estimate, never late)."""
        ahead = 0
        for queued in self._queue:
            if queued is utterance:
                return (ahead + max(0, unit - queued.played)) / FPS
            total = queued.total_units if queued.total_units is not None else queued.known_units
            ahead += max(0, total - queued.played)
        return float("inf")  # not queued (dropped): nobody waits for it

    def pause(self) -> bool:
        """Hold speech from the next tick; False when nothing is queued to hold."""
        if self.paused or not self._queue:
            return False
        self.paused = True
        return True

    def resume(self) -> bool:
        """Play on from where the pause held it; False when not paused."""
        was, self.paused = self.paused, False
        return was

    def interrupt(self) -> list[Interrupted]:
        """Drop everything queued (a pause ends too); the next tick is idle. Returns one event per
        dropped utterance (the caller emits them)."""
        events = [Interrupted(u.id, round(u.played / FPS, 3)) for u in self._queue]
        self._queue.clear()
        self.paused = False
        return events

    def tick(self) -> Unit:
        n = self.counters.ticks
        self.counters.ticks += 1
        while self._queue and self._queue[0].finished:
            empty = self._queue.popleft()  # a stream that ended before any audio came
            self._emit(SpeakingEnded(empty.id, n, 0.0))
        head = self._queue[0] if self._queue else None
        if head is None or head.base_position is None:
            return self._idle(n)
        k = head.played
        if self.paused:
            return self._held(n, head, k)
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

    def _held(self, n: int, head: Utterance, k: int) -> Unit:
        """A paused tick: silence; a started utterance holds its face where it stopped."""
        if k == 0:
            return self._idle(n)
        self.counters.paused_units += 1
        assert head.base_position is not None
        return Unit(n, head.base_position + k - 1, None, SILENCE, "idle", head.id)

    def _play(self, n: int, head: Utterance, k: int, window: Window) -> Unit:
        assert head.base_position is not None
        if k == 0:
            self._emit(SpeakingStarted(head.id, n))
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
            self._emit(SpeakingEnded(head.id, n, round(head.played / FPS, 3)))
        return unit
