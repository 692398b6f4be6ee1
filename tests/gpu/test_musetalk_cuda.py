"""MuseTalk on CUDA (tiny random weights): fp16 agrees with fp32, batching changes nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from streamer.avatar.prepared import PreparedTemplate
from streamer.config import Settings
from streamer.render.base import RenderJob
from streamer.render.musetalk import MuseTalkRenderer
from tests.support.tiny_musetalk import build_tiny_models, speech_like

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return build_tiny_models(tmp_path_factory.mktemp("musetalk") / "models")


def _renderer(models: Path, device: str = "cuda:0", **changes) -> MuseTalkRenderer:
    return MuseTalkRenderer(models, device, dataclasses.replace(Settings(), **changes))


@pytest.fixture(scope="module")
def template(models: Path) -> PreparedTemplate:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 300, 300, 3), dtype=np.uint8)
    boxes = np.array([[40, 40, 260, 280]] * 4, dtype=np.int32)
    bare = PreparedTemplate(
        id="t",
        name="t",
        kind="video",
        frames=frames,
        face_boxes=boxes,
        mouth=np.zeros((4, 2), np.float32),
        blend_boxes=boxes,
        blend_masks=np.zeros((4, 256, 256), np.uint8),
        renderer="musetalk",
        welcome=None,
    )
    extras = _renderer(models, fp16=False).prepare(bare).extras
    return dataclasses.replace(bare, extras=extras)


def _job(frames: int = 40) -> RenderJob:
    audio = speech_like(frames / 25 + 0.2, seed=1)
    return RenderJob("t", np.arange(frames, dtype=np.int64), audio, 0, True)


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def test_cuda_fp32_matches_the_cpu(models, template) -> None:
    job = _job(8)
    gpu = _renderer(models, fp16=False).render(template, job)
    cpu = _renderer(models, device="cpu").render(template, job)
    assert _diff(gpu, cpu).mean() < 0.5


def test_fp16_unet_agrees_with_fp32(models, template) -> None:
    job = _job()
    full = _renderer(models, fp16=False).render(template, job)
    half = _renderer(models, fp16=True).render(template, job)
    both = _renderer(models, fp16=True, vae_fp16=True).render(template, job)
    assert _diff(full, half).mean() < 1.5 and np.percentile(_diff(full, half), 99) <= 8
    assert _diff(full, both).mean() < 2.5


def test_batch_size_changes_nothing(models, template) -> None:
    job = _job()
    small = _renderer(models, batch_size=4).render(template, job)
    large = _renderer(models, batch_size=64).render(template, job)
    # cuDNN picks kernels per batch shape, so a few pixels move by rounding (H200, fp16: mean
    # 0.12, max 6; fp32 with TF32 convolutions: max 9); a frame paired with the wrong audio or
    # position moves the mean by tens.
    assert _diff(small, large).mean() < 0.2 and _diff(small, large).max() <= 10


def test_memory_does_not_grow_across_renders(models, template) -> None:
    renderer = _renderer(models)
    renderer.render(template, _job())
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for _ in range(3):
        renderer.render(template, _job())
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() - before < 16 * 2**20


def test_realtime_fp16_runs_whisper_vae_and_positions_in_half(models, template) -> None:
    renderer = _renderer(models, realtime_fp16=True)
    assert next(renderer.features.encoder.parameters()).dtype == torch.float16
    assert next(renderer.vae.parameters()).dtype == torch.float16 and renderer.pe.dtype == torch.float16
    assert renderer.cache_key()["whisper_dtype"] == "torch.float16"
    job = _job()
    today = _renderer(models).render(template, job)
    assert _diff(today, renderer.render(template, job)).mean() < 2.5
