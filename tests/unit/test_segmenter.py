import itertools

import numpy as np
import pytest

from streamer.core.segmenter import UNIT, Segmenter, Window, split
from streamer.errors import BadInput

RATE = 16_000
RAMP_S = 0.8
"""The ramp (5 + 5 + 10 units) before windows reach full length."""


def _voiced(seconds: float, rng: np.random.Generator, f0: float = 130.0) -> np.ndarray:
    """A buzzy harmonic signal with a syllable-rate envelope: webrtcvad calls it speech."""
    t = np.arange(int(seconds * RATE)) / RATE
    buzz = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 20))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    signal = 0.3 * buzz / np.abs(buzz).max() * envelope + 0.003 * rng.standard_normal(len(t))
    return signal.astype(np.float32)


def _assert_tiles(windows: list[Window], total_units: int) -> None:
    assert windows, "no windows"
    assert windows[0].first_unit == 0
    for before, after in itertools.pairwise(windows):
        assert after.first_unit == before.first_unit + before.units
    assert all(w.units > 0 for w in windows)
    assert windows[-1].first_unit + windows[-1].units == total_units


@pytest.mark.parametrize("seed", range(12))
def test_windows_tile_any_length(seed):
    rng = np.random.default_rng(seed)
    samples = int(rng.integers(1, 6 * RATE))
    audio = _voiced(samples / RATE, rng) if seed % 2 else 0.01 * rng.standard_normal(samples)
    windows = split(audio.astype(np.float32))
    _assert_tiles(windows, -(-samples // UNIT))
    assert windows[0].units == min(5, -(-samples // UNIT))
    assert all(w.units <= round(1.5 * 25) for w in windows)


def test_empty_utterance_has_no_windows():
    segmenter = Segmenter()
    assert segmenter.push(np.zeros(0, np.float32)) == []
    assert segmenter.finish() == []
    assert segmenter.total_units == 0


@pytest.mark.parametrize("first_s, expected", [(0.2, 5), (0.08, 2), (0.5, 12), (1.0, 25)])
def test_first_window_size(first_s, expected):
    windows = split(_voiced(3.0, np.random.default_rng(0)), first_window_s=first_s, window_s=1.0)
    assert windows[0] == Window(0, expected)


@pytest.mark.parametrize("pause_at_s", [0.9, 1.2, 1.45])
def test_cut_lands_in_the_pause(pause_at_s):
    rng = np.random.default_rng(3)
    before = _voiced(RAMP_S - 0.2 + pause_at_s, rng)
    audio = np.concatenate([before, np.zeros(int(0.3 * RATE), np.float32), _voiced(1.5, rng)])
    windows = split(audio)
    silence = (len(before), len(before) + int(0.3 * RATE))
    cut = windows[3].first_unit + windows[3].units
    assert silence[0] <= cut * UNIT - UNIT // 2 and cut * UNIT + UNIT // 2 <= silence[1]
    _assert_tiles(windows, -(-len(audio) // UNIT))


def test_without_a_pause_cuts_at_the_target():
    windows = split(_voiced(4.0, np.random.default_rng(4)), first_window_s=0.2, window_s=1.0)
    assert [w.units for w in windows[:5]] == [5, 5, 10, 25, 25]


def test_quietest_pause_wins():
    rng = np.random.default_rng(5)
    parts = [
        _voiced(RAMP_S - 0.2 + 0.7, rng),
        0.002 * rng.standard_normal(int(0.3 * RATE)).astype(np.float32),  # soft noise: a pause
        _voiced(0.4, rng),
        np.zeros(int(0.3 * RATE), np.float32),  # digital silence: quieter
        _voiced(1.5, rng),
    ]
    windows = split(np.concatenate(parts))
    quiet_start = sum(len(p) for p in parts[:3])
    cut = windows[3].first_unit + windows[3].units
    assert quiet_start < cut * UNIT < quiet_start + int(0.3 * RATE)


@pytest.mark.parametrize("seed", range(6))
def test_streaming_equals_split_and_respects_lookahead(seed):
    rng = np.random.default_rng(100 + seed)
    pieces = []
    for _ in range(6):
        pieces.append(_voiced(float(rng.uniform(0.3, 1.4)), rng))
        pieces.append(np.zeros(int(rng.uniform(0.05, 0.4) * RATE), np.float32))
    audio = np.concatenate(pieces)

    segmenter = Segmenter(lookahead_units=2)
    streamed: list[Window] = []
    position = 0
    while position < len(audio):
        size = int(rng.integers(1, 3000))
        for window in segmenter.push(audio[position : position + size]):
            # a window is only released once its audio and two more units are known
            assert (window.first_unit + window.units + 2) * UNIT <= position + size
            streamed.append(window)
        position += size
    assert len(streamed) >= 3  # windows come out while audio is still arriving
    streamed += segmenter.finish()
    assert streamed == split(audio)
    _assert_tiles(streamed, segmenter.total_units)


def test_first_window_waits_for_lookahead():
    segmenter = Segmenter(first_window_s=0.2, lookahead_units=2)
    audio = _voiced(1.0, np.random.default_rng(6))
    assert segmenter.push(audio[: 7 * UNIT - 1]) == []
    assert segmenter.push(audio[7 * UNIT - 1 : 7 * UNIT]) == [Window(0, 5)]
    assert segmenter.total_units == 7


def test_finish_pads_the_tail_and_closes():
    segmenter = Segmenter()
    segmenter.push(np.zeros(3 * UNIT + 1, np.float32))
    assert segmenter.finish() == [Window(0, 4)]
    assert segmenter.total_units == 4
    assert segmenter.finish() == []
    with pytest.raises(BadInput):
        segmenter.push(np.zeros(10, np.float32))


def test_windows_ramp_up_so_each_renders_while_the_earlier_play():
    windows = split(_voiced(3.0, np.random.default_rng(9)), first_window_s=0.2, window_s=1.0)
    sizes = [w.units for w in windows]
    assert sizes[:3] == [5, 5, 10]
    for w in windows[1:3]:
        assert w.units <= w.first_unit  # no longer than what plays before it


def test_cut_available_takes_what_is_known_and_the_rest_still_tiles():
    rng = np.random.default_rng(11)
    audio = _voiced(3.0, rng)
    segmenter = Segmenter()
    windows = segmenter.push(audio[: 12 * UNIT])  # 12 units: the first two ramp windows
    assert [w.units for w in windows] == [5, 5]
    assert segmenter.cut_available() == []  # nothing past the look-ahead yet
    windows += segmenter.push(audio[12 * UNIT : 15 * UNIT])
    extra = segmenter.cut_available()
    assert extra == [Window(10, 15 - 2 - 10)]  # all known units but the 2 of look-ahead
    windows += extra + segmenter.push(audio[15 * UNIT :]) + segmenter.finish()
    _assert_tiles(windows, -(-len(audio) // UNIT))


def test_cut_available_waits_for_the_first_window():
    segmenter = Segmenter()
    segmenter.push(_voiced(0.1, np.random.default_rng(12)))
    assert segmenter.cut_available() == []
