"""Rest in silence: no rest frame inside voiced audio, pauses rest, one blended frame per edge.

The audio is built so its voiced spans are known by construction (harmonic tone bursts whose
tails fade to -60 dBFS), not judged by the VAD under test.
"""

from __future__ import annotations

import itertools

import numpy as np

from streamer.render.musetalk.silence import EDGE, MIN_REST_UNITS, model_weights, rest_weights
from streamer.units import MODEL_RATE, MODEL_SAMPLES_PER_UNIT

UNIT = MODEL_SAMPLES_PER_UNIT


def _bursts(seed: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Tone bursts (120–220 Hz, 7 harmonics) with 150 ms fading tails, between gaps of
    80–600 ms; returns the audio and each burst's span in units (rounded outwards)."""
    rng = np.random.default_rng(seed)
    parts, spans, at = [], [], 0
    for _ in range(8):
        gap = int(rng.uniform(0.08, 0.6) * MODEL_RATE)
        parts.append(np.zeros(gap, np.float32))
        at += gap
        n = int(rng.uniform(0.25, 0.8) * MODEL_RATE)
        t = np.arange(n) / MODEL_RATE
        f0 = rng.uniform(120, 220)
        tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8))
        tail = np.clip((t - (t[-1] - 0.15)) / 0.15, 0, 1)  # last 150 ms: fade to -60 dB
        envelope = np.minimum(1, t / 0.02) * 10 ** (-3 * tail)
        parts.append((0.3 * tone * envelope).astype(np.float32))
        spans.append((at // UNIT, -(-(at + n) // UNIT)))
        at += n
    parts.append(np.zeros(MODEL_RATE // 2, np.float32))
    return np.concatenate(parts), spans


def _windows(audio: np.ndarray, units: int, final: bool = True) -> np.ndarray:
    """Weights as the session asks for them: a 5-unit first window, then 25-unit windows."""
    out, start, size = [], 0, 5
    while start < units:
        stop = min(units, start + size)
        out.append(rest_weights(audio, start, stop - start, final))
        start, size = stop, 25
    return np.concatenate(out)


def test_no_rest_frame_inside_voiced_audio_and_pauses_rest() -> None:
    for seed in range(4):
        audio, spans = _bursts(seed)
        units = len(audio) // UNIT
        weights = _windows(audio, units)
        assert np.array_equal(weights, rest_weights(audio, 0, units, True))  # windows agree
        for a, b in spans:
            assert np.all(weights[a:b] == 1.0), (seed, a, b, weights[a:b])
        gaps = [(b, c) for (_, b), (c, _) in itertools.pairwise(spans)]
        for b, c in gaps:
            if c - b >= MIN_REST_UNITS + 4:  # a clear pause (VAD hangover aside) rests
                assert np.any(weights[b:c] == 0.0), (seed, b, c, weights[b:c])
            if c - b < MIN_REST_UNITS:  # a short gap keeps the model's mouth
                assert np.all(weights[b:c] == 1.0)


def test_edges_blend_one_frame_each() -> None:
    voiced = np.array([1] * 4 + [0] * 7 + [1] * 3 + [0] * 3 + [1] * 2, bool)
    w = model_weights(voiced)
    assert w.tolist() == [1] * 4 + [EDGE] + [0] * 5 + [EDGE] + [1] * 3 + [1] * 3 + [1] * 2
    mixed = (w > 0) & (w < 1)
    assert not np.any(mixed[1:] & mixed[:-1])  # never two averaged frames in a row


def test_unheard_audio_of_a_stream_is_not_rest() -> None:
    audio = np.zeros(MODEL_RATE, np.float32)  # 1 s of silence heard so far
    assert np.all(rest_weights(audio, 20, 10, final=False)[-5:] == 1.0)
    assert np.all(rest_weights(audio, 20, 10, final=True)[2:] == 0.0)


def test_rendered_voiced_frames_keep_the_model_mouth() -> None:
    """Through `rest_in_silence` as the renderer applies it: every frame of a voiced span is
    the model's crop untouched; deep in a long pause, the template's own crop."""
    from streamer.avatar.face import crop_face
    from streamer.avatar.prepared import PreparedTemplate
    from streamer.render.base import RenderJob
    from streamer.render.musetalk.silence import rest_in_silence

    audio, spans = _bursts(1)
    units = len(audio) // UNIT
    frames = np.random.default_rng(0).integers(0, 256, (1, 200, 200, 3), dtype=np.uint8)
    template = PreparedTemplate(
        id="t",
        name="t",
        kind="photo",
        frames=frames,
        face_boxes=np.array([[20, 20, 180, 190]], np.int32),
        mouth=np.zeros((1, 2), np.float32),
        blend_boxes=np.array([[0, 0, 200, 200]], np.int32),
        blend_masks=np.zeros((1, 256, 256), np.uint8),
        renderer="musetalk",
        welcome=None,
    )
    model = np.full((units, 256, 256, 3), 9, np.uint8)  # stand-in model output
    job = RenderJob("t", np.arange(units, dtype=np.int64), audio, 0, True)
    out = rest_in_silence(template, job, np.zeros(units, np.int64), model.copy())
    for a, b in spans:
        assert np.array_equal(out[a:b], model[a:b])
    still = crop_face(frames[0], template.face_boxes[0])
    assert np.array_equal(out[-3], still)  # the closing half second of silence
