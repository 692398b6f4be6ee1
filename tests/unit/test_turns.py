"""The turn detector, frame by frame (32 ms frames), on a clock the test moves."""

from __future__ import annotations

import numpy as np

from streamer.voice.turns import SpeechLasted, SpeechStarted, TurnDetector, TurnEnded, TurnSettings

FRAME_MS = 32.0


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def detector(**kw: float) -> tuple[TurnDetector, Clock]:
    clock = Clock()
    return TurnDetector(TurnSettings(**kw), FRAME_MS, clock), clock


def run(d: TurnDetector, clock: Clock, pattern: str, start: int = 0) -> list[tuple[int, object]]:
    """Push one frame per character ('x' voiced, '~' soft: 0.4, under the 0.5 threshold but over
    its hysteresis bar, '-' rising: 0.2, a word's first frame to Silero, '.' quiet); frame k's
    samples all hold k."""
    out = []
    for i, c in enumerate(pattern, start):
        clock.t += FRAME_MS / 1000
        for event in d.push({"x": 0.9, "~": 0.4, "-": 0.2}.get(c, 0.02), np.full(512, i, np.int16)):
            out.append((i, event))
    return out


def test_a_turn_starts_after_min_speech_lasts_and_ends_after_the_silence():
    d, clock = detector()
    # 200 ms of voice = 7 frames of 32 ms; 600 ms of silence = 19 frames
    events = run(d, clock, "." * 20 + "x" * 20 + "." * 18)
    assert [(i, type(e)) for i, e in events] == [(26, SpeechStarted), (29, SpeechLasted)]
    assert d.state == "speaking"
    ((i, ended),) = run(d, clock, ".", start=58)
    assert i == 58 and isinstance(ended, TurnEnded) and ended.reason == "pause"
    assert int(ended.audio[0]) == 20 - 10  # 300 ms of preroll: 10 frames before the onset at frame 20
    assert int(ended.audio[-1]) == 58 and len(ended.audio) == 512 * (59 - 10)
    assert ended.speech_s == round(20 * FRAME_MS / 1000, 3)
    assert ended.vad_end_ms == round(19 * FRAME_MS, 1)  # the clock from the last voiced frame
    assert d.state == "quiet"


def test_a_short_noise_never_starts_a_turn_and_is_forgotten_after_the_silence():
    d, clock = detector()
    assert run(d, clock, "." * 5 + "xxx" + "." * 30) == []  # ~100 ms
    assert d.state == "quiet" and d.audio_so_far().size == 0
    # two short noises close together add up: speech, not noise
    events = run(d, clock, "xxxx" + "." * 5 + "xxxx")
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechLasted][: len(events)]
    assert events and isinstance(events[0][1], SpeechStarted)


def test_pauses_shorter_than_the_end_silence_keep_the_turn_going():
    d, clock = detector()
    events = run(d, clock, "x" * 10 + "." * 15 + "x" * 10 + "." * 15 + "x" * 5 + "." * 19)
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, SpeechLasted, TurnEnded]
    assert events[-1][1].speech_s == round((10 + 15 + 10 + 15 + 5) * FRAME_MS / 1000, 3)


def test_a_turn_that_never_pauses_ends_at_max_s():
    d, clock = detector(max_s=1.0)
    events = run(d, clock, "x" * 40)
    ended = [e for _, e in events if isinstance(e, TurnEnded)]
    assert len(ended) == 1 and ended[0].reason == "max"
    assert [i for i, e in events if isinstance(e, TurnEnded)] == [31]  # 32 frames = 1.024 s


def test_the_threshold_and_min_speech_are_settings():
    d, clock = detector(threshold=0.95)
    assert run(d, clock, "x" * 30) == []  # 0.9 is below 0.95
    d, clock = detector(min_speech_ms=500.0, long_speech_ms=600.0)
    events = run(d, clock, "x" * 30)
    assert [(i, type(e)) for i, e in events] == [(15, SpeechStarted), (18, SpeechLasted)]
    assert len(d.audio_so_far()) == 512 * 30


def test_the_onset_is_dated_back_over_the_rising_frames_before_it():
    d, clock = detector()
    # Silero climbs over a frame or two as a word begins: those frames are the word's start
    events = run(d, clock, "." * 20 + "~~" + "x" * 20)
    assert [(i, type(e)) for i, e in events] == [(26, SpeechStarted), (29, SpeechLasted)]  # 7 and 10 frames from 20
    assert ended_speech_s(d, clock, start=42) == round(22 * FRAME_MS / 1000, 3)  # frames 20 to 41, not 22 to 41
    # soft frames alone never begin a turn; a quiet frame stops the dating back, and so does its limit
    d, clock = detector()
    assert run(d, clock, "~" * 40 + "-" * 40) == []
    events = run(d, clock, "~~.-" + "x" * 20, start=80)
    assert [(i, type(e)) for i, e in events] == [(89, SpeechStarted), (92, SpeechLasted)]  # counted from 83
    d, clock = detector()
    events = run(d, clock, "-~~" + "x" * 20)
    assert [(i, type(e)) for i, e in events] == [(7, SpeechStarted), (10, SpeechLasted)]  # RISE_FRAMES: from 1


def test_soft_frames_inside_speech_count_as_voice():
    d, clock = detector()
    events = run(d, clock, "xx" + "~x" * 10 + "." * 19)
    kinds = [(i, type(e)) for i, e in events]
    assert kinds[:2] == [(6, SpeechStarted), (9, SpeechLasted)]  # 7 and 10 frames: the soft ones count
    assert isinstance(events[-1][1], TurnEnded) and events[-1][1].speech_s == round(22 * FRAME_MS / 1000, 3)


def test_a_dip_of_two_frames_inside_speech_counts_as_voice_and_a_longer_one_does_not():
    d, clock = detector()
    events = run(d, clock, "xxx..xx" + "x" * 10)
    assert [(i, type(e)) for i, e in events] == [(6, SpeechStarted), (9, SpeechLasted)]  # the dip counts
    d, clock = detector()
    events = run(d, clock, "xxx...xx" + "x" * 10)
    assert [(i, type(e)) for i, e in events] == [(9, SpeechStarted), (12, SpeechLasted)]  # 3 frames: not


def ended_speech_s(d: TurnDetector, clock: Clock, start: int) -> float:
    """End the current turn with a pause; its speech_s."""
    ended = [e for _, e in run(d, clock, "." * 19, start=start) if isinstance(e, TurnEnded)]
    return ended[0].speech_s


def _lasted_after(d: TurnDetector, frames: list[tuple[float, np.ndarray]], voiced: np.ndarray) -> list[int]:
    """Push `frames`, then voiced frames: which of those told `SpeechLasted` (none before)."""
    assert all(d.push(p, f) == [] for p, f in frames)
    return [k for k in range(12) for e in d.push(0.9, voiced) if isinstance(e, SpeechLasted)]


def test_loud_frames_silero_missed_date_the_onset_back_from_their_first_loud_sample():
    quiet, loud = np.zeros(512, np.int16), np.full(512, 3000, np.int16)
    tail = np.concatenate([np.zeros(448, np.int16), np.full(64, 3000, np.int16)])
    # a soft "th" Silero does not hear yet: 4 + 32 ms of it before the first voiced frame, so
    # 300 ms is reached with the 9th voiced frame (36 + 9 × 32 = 324), not the 10th (nor the 8th:
    # the frame the sound began in counts from its first loud sample, not whole)
    d, _ = detector()
    assert _lasted_after(d, [(0.02, quiet)] * 10 + [(0.02, tail), (0.05, loud)], loud) == [8]
    # in a loud room the same level is the pause's own: nothing is dated back
    d, _ = detector()
    assert _lasted_after(d, [(0.02, loud)] * 12, loud) == [9]
    # nor by level at the very start of the microphone, with no pause before to measure …
    d, _ = detector()
    assert _lasted_after(d, [(0.02, loud)] * 2, loud) == [9]
    # … where Silero's own climb still dates it back
    d, _ = detector()
    assert _lasted_after(d, [(0.2, loud)] * 2, loud) == [7]


def test_a_low_threshold_keeps_a_bar_inside_speech_so_a_pause_still_ends_the_turn():
    for threshold in (0.1, 0.15):
        d, clock = detector(threshold=threshold)
        events = run(d, clock, "x" * 10 + "." * 19)
        assert [type(e) for _, e in events] == [SpeechStarted, SpeechLasted, TurnEnded], threshold
