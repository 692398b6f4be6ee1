"""Turn detection: VAD frames in, the user's turns out. Pure logic on frames (the audio is
the clock that decides; an injectable clock only stamps when each decision was taken).

A turn begins when voiced frames add up to `min_speech_ms` (shorter sounds are dropped as
noise once a pause of `end_silence_ms` follows them), ends at a pause of `end_silence_ms` or
after `max_s`, and its audio keeps `preroll_ms` from before the frame that reached `threshold`
(the onset frames dated back are among them).

A frame is voiced at `threshold`; once speech has begun, down to `threshold - HYSTERESIS`
(Silero's own rule; never under half the threshold), so the softer frames of a word do not cut
it up. The onset is dated back over up to `RISE_FRAMES` frames just before it that Silero gives
`ONSET_FLOOR` or more, or whose level is `ENERGY_RISE` times the pause's before them (by level
only after a pause to measure: not at the very start of the microphone): Silero's probability
takes a frame or two to climb as a word begins (0.1–0.3 on the first frame that is all voice, less on a
soft "th" or "f"), and those frames are the word's start, not silence; a dip of up to
`BRIDGE_MS` between voiced frames counts as voice too. So `long_speech_ms` (barge-in) counts
the time the user has been speaking, from their first loud sample.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TurnSettings:
    threshold: float = 0.5
    min_speech_ms: float = 200.0
    end_silence_ms: float = 600.0
    max_s: float = 30.0
    preroll_ms: float = 300.0
    long_speech_ms: float = 300.0
    """Voiced time after which `SpeechLasted` is told (barge-in's `barge_in_min_speech_ms`)."""


@dataclass(frozen=True)
class SpeechStarted:
    at: float


@dataclass(frozen=True)
class SpeechLasted:
    at: float


@dataclass(frozen=True)
class TurnEnded:
    audio: np.ndarray
    """int16 16 kHz: the preroll, the speech, and the pause that ended it."""
    speech_s: float
    """From the first voiced frame to the last."""
    at: float
    vad_end_ms: float
    """Clock time from the last voiced frame's arrival to this decision."""
    reason: str
    """`pause` or `max`."""


TurnEvent = SpeechStarted | SpeechLasted | TurnEnded

HYSTERESIS = 0.15
ONSET_FLOOR = 0.1
RISE_FRAMES = 2
ENERGY_RISE = 4.0
"""12 dB over the pause before the onset (its median frame level, at least `QUIET_RMS`)."""
QUIET_RMS = 30.0
BRIDGE_MS = 64.0


class TurnDetector:
    def __init__(self, settings: TurnSettings, frame_ms: float, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.frame_ms = frame_ms
        self._clock = clock
        self._preroll: deque[tuple[np.ndarray, float]] = deque(maxlen=max(1, math.ceil(settings.preroll_ms / frame_ms)))
        """The frames before a turn, with their probabilities (an onset is dated back over them)."""
        self._frames: list[np.ndarray] = []
        self.state = "quiet"
        """`quiet`, `onset` (voiced, not long enough to count yet) or `speaking`."""
        self.voiced_ms = 0.0
        self._silence_ms = 0.0
        self._lasted = False
        self._last_voiced_at = 0.0
        self._first_voiced = 0
        self._last_voiced = 0

    def push(self, probability: float, frame: np.ndarray) -> list[TurnEvent]:
        """One VAD frame and its probability; what it decided."""
        if self.state == "quiet":
            if probability < self.settings.threshold:
                self._preroll.append((frame, probability))
                return []
            self._begin()
        threshold = self.settings.threshold
        voiced = probability >= threshold - min(HYSTERESIS, threshold / 2)
        self._frames.append(frame)
        if voiced:
            bridged = self._silence_ms if self._silence_ms <= BRIDGE_MS else 0.0
            self.voiced_ms += self.frame_ms + bridged
            self._silence_ms = 0.0
            self._last_voiced = len(self._frames)
            self._last_voiced_at = self._clock()
        else:
            self._silence_ms += self.frame_ms
        return self._decide()

    def _begin(self) -> None:
        """An onset, dated back over the frames just before it that Silero climbs on or that are loud."""
        self.state = "onset"
        before = list(self._preroll)
        self._frames = [frame for frame, _ in before]
        pause = before[:-RISE_FRAMES]
        level = float(np.median([_rms(f) for f, _ in pause])) if pause else 0.0
        loud = ENERGY_RISE * max(QUIET_RMS, level) if pause else math.inf
        rising: list[np.ndarray] = []
        for frame, probability in before[::-1][:RISE_FRAMES]:
            if probability < ONSET_FLOOR and _rms(frame) < loud:
                break
            rising.insert(0, frame)
        self._first_voiced = self._last_voiced = len(self._frames) - len(rising)
        self.voiced_ms = len(rising) * self.frame_ms
        if rising:  # the earliest counts from its first loud sample, when it has one
            first = np.flatnonzero(np.abs(rising[0].astype(np.int32)) >= loud)
            self.voiced_ms -= (first[0] if first.size else 0) / len(rising[0]) * self.frame_ms
        self._silence_ms = 0.0
        self._lasted = False

    def _decide(self) -> list[TurnEvent]:
        s = self.settings
        out: list[TurnEvent] = []
        if self.state == "onset" and self.voiced_ms >= s.min_speech_ms:
            self.state = "speaking"
            out.append(SpeechStarted(self._clock()))
        if self.state == "onset" and self._silence_ms >= s.end_silence_ms:
            self._reset()  # a noise too short to be speech
            return out
        if self.state != "speaking":
            return out
        if not self._lasted and self.voiced_ms >= s.long_speech_ms:
            self._lasted = True
            out.append(SpeechLasted(self._clock()))
        spoken_ms = (len(self._frames) - self._first_voiced) * self.frame_ms
        if self._silence_ms >= s.end_silence_ms or spoken_ms >= s.max_s * 1000:
            out.append(self._end("pause" if self._silence_ms >= s.end_silence_ms else "max"))
        return out

    def _end(self, reason: str) -> TurnEnded:
        now = self._clock()
        speech_s = (self._last_voiced - self._first_voiced) * self.frame_ms / 1000
        audio = np.concatenate(self._frames)
        ended = TurnEnded(audio, round(speech_s, 3), now, round((now - self._last_voiced_at) * 1000, 1), reason)
        self._reset()
        return ended

    def _reset(self) -> None:
        self._preroll.clear()
        self._preroll.extend((frame, 0.0) for frame in self._frames[-(self._preroll.maxlen or 1) :])
        self._frames = []
        self.state = "quiet"
        self.voiced_ms = self._silence_ms = 0.0

    def audio_so_far(self) -> np.ndarray:
        """The current turn's audio until now (empty when quiet)."""
        return np.concatenate(self._frames) if self._frames else np.zeros(0, np.int16)


def _rms(frame: np.ndarray) -> float:
    return float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))
