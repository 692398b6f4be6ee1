"""The embedded lite renderer: shapes, silence, speech, determinism (its speed: bench/lite.py)."""

from __future__ import annotations

import numpy as np
import pytest

from streamer import resources
from streamer.avatar.face import crop_face
from streamer.avatar.sources import discover
from streamer.render.base import RenderJob
from streamer.render.lite import LiteRenderer, openings
from streamer.render.prepare import load_or_prepare
from streamer.units import MODEL_RATE, MODEL_SAMPLES_PER_UNIT

TEMPLATES = resources.TEMPLATES


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    source = discover(TEMPLATES)["astronaut"]
    return load_or_prepare(source, LiteRenderer(), tmp_path_factory.mktemp("cache"), progress=False)


def voiced(seconds: float, level: float, seed: int = 0) -> np.ndarray:
    """A buzzy vowel-like sound (150 Hz harmonics) with a little noise, at peak `level`."""
    t = np.arange(int(seconds * MODEL_RATE)) / MODEL_RATE
    x = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 12))
    x += 0.05 * np.random.default_rng(seed).standard_normal(t.size)
    return (level * x / np.abs(x).max()).astype(np.float32)


def job(audio: np.ndarray, first: int = 0, count: int | None = None) -> RenderJob:
    count = len(audio) // MODEL_SAMPLES_PER_UNIT - first if count is None else count
    return RenderJob("astronaut", np.arange(first, first + count), audio, first, final=True)


def mouth_region(template, crops: np.ndarray) -> np.ndarray:
    mx, my = template.mouth[0]
    return crops[:, int(my) - 10 : int(my) + 30, int(mx) - 40 : int(mx) + 40].astype(int)


def test_shape_and_dtype(template):
    out = LiteRenderer().render(template, job(voiced(0.4, 0.5)))
    assert out.shape == (10, 256, 256, 3) and out.dtype == np.uint8


def test_silence_is_the_template_crop(template):
    crop = crop_face(template.frames[0], template.face_boxes[0])
    quiet = (0.0005 * np.random.default_rng(1).standard_normal(16000)).astype(np.float32)  # -66 dBFS
    for audio in (np.zeros(16000, np.float32), quiet):
        out = LiteRenderer().render(template, job(audio))
        assert np.array_equal(out, np.broadcast_to(crop, out.shape))


def test_speech_moves_the_mouth_more_when_louder(template):
    crop = crop_face(template.frames[0], template.face_boxes[0])
    r = LiteRenderer()
    soft = r.render(template, job(voiced(0.4, 0.05)))
    loud = r.render(template, job(voiced(0.4, 0.6)))
    base = mouth_region(template, crop[None])
    soft_d = np.abs(mouth_region(template, soft) - base).mean()
    loud_d = np.abs(mouth_region(template, loud) - base).mean()
    assert soft_d > 0.5 and loud_d > 1.5 * soft_d
    # The upper face (eyes) never moves.
    assert np.array_equal(loud[:, :100], np.broadcast_to(crop[:100], loud[:, :100].shape))


def test_openings_follow_the_envelope():
    audio = np.concatenate([np.zeros(8000, np.float32), voiced(0.4, 0.5), np.zeros(8000, np.float32)])
    o = openings(audio, 0, len(audio) // MODEL_SAMPLES_PER_UNIT)
    assert np.all(o[:11] == 0) and np.all(o[-11:] == 0)  # closed in silence (1 frame of smoothing)
    assert o[14:20].min() > 0.5


def test_deterministic_and_window_independent(template):
    audio = voiced(1.0, 0.4, seed=3)
    r = LiteRenderer()
    whole = r.render(template, job(audio))
    again = r.render(template, job(audio))
    assert np.array_equal(whole, again)
    # Rendering in windows gives the same frames (the audio context covers the smoothing).
    parts = np.concatenate([r.render(template, job(audio, s, 5)) for s in range(0, 25, 5)])
    assert np.array_equal(parts, whole)
