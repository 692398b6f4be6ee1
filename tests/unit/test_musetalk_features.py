"""Whisper features and their windowing against a step-by-step copy of the official recipe."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, WhisperModel

from streamer.render.musetalk.features import WhisperFeatures, frame_windows
from streamer.render.musetalk.layout import find_layout
from streamer.render.musetalk.models import load_whisper
from streamer.render.musetalk.positional import positional_encoding
from tests.support.tiny_musetalk import build_tiny_models, speech_like

RATE = 16_000


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return build_tiny_models(tmp_path_factory.mktemp("musetalk") / "models")


@pytest.fixture(scope="module")
def features(models: Path) -> WhisperFeatures:
    extractor, encoder = load_whisper(find_layout(models))
    return WhisperFeatures(extractor, encoder, torch.device("cpu"))


@torch.inference_mode()
def official_features(models: Path, audio: np.ndarray) -> torch.Tensor:
    """MUSETALK.md's v1.5 recipe, loaded through transformers' own from_pretrained."""
    extractor = AutoFeatureExtractor.from_pretrained(str(models / "whisper"), local_files_only=True)
    whisper = WhisperModel.from_pretrained(str(models / "whisper"), local_files_only=True).eval()
    states = []
    for start in range(0, len(audio), 30 * RATE):
        mel = extractor(audio[start : start + 30 * RATE], return_tensors="pt", sampling_rate=RATE).input_features
        hidden = whisper.encoder(mel, output_hidden_states=True).hidden_states
        states.append(torch.stack(hidden, dim=2))  # [1, 1500, 5, 384]
    feature = torch.cat(states, dim=1)
    seconds = len(audio) / RATE
    feature = feature[:, : math.floor(seconds * 50)]
    feature = torch.cat([torch.zeros_like(feature[:, :4]), feature, torch.zeros_like(feature[:, :12])], dim=1)
    prompts = []
    for frame in range(math.floor(seconds * 25)):
        clip = feature[:, 2 * frame : 2 * frame + 10]
        assert clip.shape[1] == 10
        prompts.append(clip)
    prompts = torch.cat(prompts, dim=0)  # [T, 10, 5, 384]
    return prompts.reshape(prompts.shape[0], 50, 384)


def test_positional_encoding_is_the_standard_sin_cos_interleave() -> None:
    pe = positional_encoding(50, 384)
    assert pe.shape == (50, 384)
    pos, i = 7, 10
    angle = pos / 10000 ** (i / 384)
    assert pe[pos, i].item() == pytest.approx(math.sin(angle), abs=1e-5)
    assert pe[pos, i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)
    assert torch.all(pe[0, 1::2] == 1) and torch.all(pe[0, 0::2] == 0)


@pytest.mark.parametrize("seconds", [2.37, 31.3])
def test_features_match_the_official_windowing(models: Path, features: WhisperFeatures, seconds: float) -> None:
    audio = speech_like(seconds, seed=1)
    expected = official_features(models, audio)
    frames = len(audio) * 25 // RATE
    got = features.windows(audio, 0, frames)
    assert got.shape == expected.shape == (frames, 50, 384)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    # A later window of the same audio is the same slice (cached segments, no re-encoding).
    torch.testing.assert_close(features.windows(audio, 30, 7), expected[30:37], rtol=1e-4, atol=1e-4)


def test_windows_are_zero_outside_the_audio() -> None:
    hidden = torch.arange(1, 21, dtype=torch.float32).reshape(20, 1, 1).expand(20, 5, 2)
    first = frame_windows(hidden, 0, 1)[0].reshape(10, 5, 2)
    assert torch.all(first[:4] == 0) and torch.equal(first[4:, 0, 0], torch.arange(1.0, 7.0))
    beyond = frame_windows(hidden, 20, 2)
    assert torch.all(beyond == 0)
    assert frame_windows(hidden[:0], 0, 3).shape == (3, 50, 2)


def _streamed_similarity(features: WhisperFeatures, audio: np.ndarray, so_far: bool) -> float:
    """Mean per-frame cosine of windowed features to the whole file's: a 5-unit first window,
    then 1 s windows, each given 2 units of look-ahead and the utterance so far (or nothing)."""
    frames = len(audio) * 25 // RATE
    whole = features.windows(audio, 0, frames)
    sims, start, size = [], 0, 5
    while start < frames:
        stop = min(frames, start + size)
        origin = 0 if so_far else start
        part = features.windows(audio[origin * 640 : (stop + 2) * 640], start - origin, stop - start)
        sims.append(torch.nn.functional.cosine_similarity(part.flatten(1), whole[start:stop].flatten(1), dim=1))
        start, size = stop, 25
    return torch.cat(sims).mean().item()


def test_streaming_features_stay_close_to_the_whole_file(features: WhisperFeatures) -> None:
    audio = speech_like(6.0, seed=2)
    mean = _streamed_similarity(features, audio, so_far=True)
    alone = _streamed_similarity(features, audio, so_far=False)
    print(f"streaming feature cosine: {mean:.6f} with the utterance so far, {alone:.3f} alone")
    assert mean >= 0.99
    assert alone < 0.9  # why the utterance so far is needed: a window alone is far off


def _distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-frame cosine distance (1 - cosine) of two [T, 50, 384] feature sets."""
    return (1 - torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)).mean().item()


def streamed(features: WhisperFeatures, audio: np.ndarray) -> torch.Tensor:
    """Features as a live stream computes them: the utterance so far + 2 units of look-ahead."""
    frames = len(audio) * 25 // RATE
    parts, start, size = [], 0, 5
    while start < frames:
        stop = min(frames, start + size)
        parts.append(features.windows(audio[: (stop + 2) * 640], start, stop - start, final=False))
        start, size = stop, 25
    return torch.cat(parts)


def feature_discrimination(features: WhisperFeatures, seconds: float = 6.0) -> dict[str, float]:
    """Streamed vs whole-file features of the same audio, and whole-file features of two
    different sentences (and of speech vs silence): what the streaming claim is measured by."""
    a, b = speech_like(seconds, seed=2), speech_like(seconds, seed=5)
    frames = len(a) * 25 // RATE
    whole_a, whole_b = features.windows(a, 0, frames), features.windows(b, 0, frames)
    silence = features.windows(np.zeros_like(a), 0, frames)
    return {
        "streamed_vs_whole_same_audio": _distance(streamed(features, a), whole_a),
        "whole_vs_whole_different_audio": _distance(whole_a, whole_b),
        "speech_vs_silence": _distance(whole_a, silence),
    }


def test_streamed_features_tell_audio_apart(features: WhisperFeatures) -> None:
    d = feature_discrimination(features)
    print("feature distances:", d)
    # The streamed features are far closer to the same audio's than two sentences are to
    # each other: features of the wrong audio would fail this.
    assert d["streamed_vs_whole_same_audio"] * 10 <= d["whole_vs_whole_different_audio"]
    assert d["streamed_vs_whole_same_audio"] * 10 <= d["speech_vs_silence"]


def test_the_segment_cache_is_bounded_and_skips_growing_streams(features: WhisperFeatures) -> None:
    cache = WhisperFeatures(features.extractor, features.encoder, torch.device("cpu"), cache_segments=2)
    audio = speech_like(0.5, seed=11)
    streamed = cache.hidden_states(audio, final=False)
    assert len(cache._cache) == 0  # the stream's growing tail never recurs
    torch.testing.assert_close(cache.hidden_states(audio), streamed)
    assert len(cache._cache) == 1
    for seed in (12, 13, 14):
        cache.hidden_states(speech_like(0.3, seed=seed))
    assert len(cache._cache) == 2
