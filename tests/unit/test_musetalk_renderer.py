"""The renderer end to end on tiny random weights, against a step-by-step reference."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from streamer.avatar.face import crop_face
from streamer.avatar.prepared import PreparedTemplate
from streamer.config import Settings
from streamer.errors import ModelError
from streamer.render.base import AudioFeatures, OwnFaces, RenderJob
from streamer.render.musetalk import MuseTalkRenderer
from streamer.render.musetalk.silence import rest_in_silence
from tests.support.tiny_musetalk import build_tiny_models, speech_like

SETTINGS = Settings(batch_size=4, rest_in_silence=False, musetalk_mask="geometric")
BOXES = np.array([[40, 30, 200, 230], [44, 28, 206, 232], [38, 34, 198, 236]], dtype=np.int32)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return build_tiny_models(tmp_path_factory.mktemp("musetalk") / "models", face_parse=False)


@pytest.fixture(scope="module")
def renderer(models: Path) -> MuseTalkRenderer:
    """The model as published: its output in silence too (`rest_in_silence` is tested apart)."""
    return MuseTalkRenderer(models, "cpu", SETTINGS)


def _template(frames: np.ndarray) -> PreparedTemplate:
    n = frames.shape[0]
    return PreparedTemplate(
        id="t",
        name="t",
        kind="video",
        frames=frames,
        face_boxes=BOXES[:n],
        mouth=np.zeros((n, 2), np.float32),
        blend_boxes=BOXES[:n],
        blend_masks=np.zeros((n, 256, 256), np.uint8),
        renderer="musetalk",
        welcome=None,
    )


@pytest.fixture(scope="module")
def template(renderer: MuseTalkRenderer) -> PreparedTemplate:
    rng = np.random.default_rng(3)
    base = cv2.resize(rng.integers(0, 256, (30, 28, 3), dtype=np.uint8), (280, 260))
    frames = np.stack([np.roll(base, k * 3, axis=1) for k in range(3)])
    calls: list[tuple[int, int]] = []
    prepared = renderer.prepare(_template(frames), lambda done, total: calls.append((done, total)))
    assert calls[-1] == (3, 3)
    latents = prepared.extras["latents"]
    assert latents.shape == (3, 8, 32, 32) and latents.dtype == np.float16
    return dataclasses.replace(_template(frames), extras=prepared.extras)


def _job(audio: np.ndarray, first: int, count: int) -> RenderJob:
    return RenderJob("t", np.arange(first, first + count, dtype=np.int64), audio, first, True)


@torch.inference_mode()
def reference_crops(
    models: Path, template: PreparedTemplate, tokens: torch.Tensor, positions: np.ndarray
) -> np.ndarray:
    """MUSETALK.md's per-frame recipe, one frame at a time, models built by diffusers itself."""
    config = json.loads((models / "musetalkV15" / "musetalk.json").read_text())
    unet = UNet2DConditionModel(**{k: v for k, v in config.items() if not k.startswith("_")})
    unet.load_state_dict(torch.load(models / "musetalkV15" / "unet.pth", weights_only=True))
    vae = AutoencoderKL.from_pretrained(str(models / "sd-vae"), local_files_only=True, low_cpu_mem_usage=False)
    unet.eval(), vae.eval()
    half = torch.ones(256, 256)
    half[128:] = 0
    pe = torch.zeros(50, 384)
    pos = torch.arange(50.0)[:, None]
    div = torch.exp(torch.arange(0, 384, 2).float() * (-math.log(10000.0) / 384))
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    out = []
    for i, position in enumerate(positions):
        f = template.frame_at(int(position))
        x1, y1, x2, y2 = template.face_boxes[f]
        crop = cv2.resize(template.frames[f][y1:y2, x1:x2], (256, 256), interpolation=cv2.INTER_LANCZOS4)
        x = torch.from_numpy(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB) / 255.0).float().permute(2, 0, 1)
        latents = []
        for image in (x * (half > 0.5), x):
            normed = ((image - 0.5) / 0.5)[None]
            latents.append(vae.encode(normed).latent_dist.mean * 0.18215)
        # The renderer caches latents in float16; the reference goes through the same rounding.
        latent = torch.cat(latents, dim=1).half().float()
        audio = tokens[i][None] + pe
        pred = unet(latent, torch.tensor([0]), encoder_hidden_states=audio).sample
        image = vae.decode(pred / 0.18215).sample
        image = (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        out.append((image * 255).round().astype(np.uint8)[0][..., ::-1])
    return np.stack(out)


def test_crops_match_the_step_by_step_reference(models, renderer, template) -> None:
    audio = speech_like(1.2, seed=4)
    job = _job(audio, 1, 4)  # positions 1…4 show frames 1 2 1 0: forward, then back
    crops = renderer.render(template, job)
    assert crops.shape == (4, 256, 256, 3) and crops.dtype == np.uint8
    expected = reference_crops(models, template, renderer.audio_tokens(job), job.positions)
    diff = np.abs(crops.astype(int) - expected.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05


def test_same_audio_same_frames_and_batching_changes_nothing(models, renderer, template) -> None:
    audio = speech_like(1.0, seed=5)
    job = _job(audio, 0, 6)
    first = renderer.render(template, job)
    assert np.array_equal(first, renderer.render(template, job))
    other = MuseTalkRenderer(models, "cpu", dataclasses.replace(SETTINGS, batch_size=32))
    assert np.abs(first.astype(int) - other.render(template, job).astype(int)).max() <= 1
    # A window of the same upload is the same frames as the whole.
    part = renderer.render(template, _job(audio, 4, 2))
    assert np.abs(part.astype(int) - first[4:6].astype(int)).max() <= 1


def test_different_audio_moves_the_face(renderer, template) -> None:
    speech = renderer.render(template, _job(speech_like(0.8, seed=6), 0, 3))
    silence = renderer.render(template, _job(np.zeros(16_000 * 4 // 5, np.float32), 0, 3))
    assert np.abs(speech.astype(int) - silence.astype(int)).mean() > 1.0


def test_frame_indices_follow_the_ping_pong_loop(template) -> None:
    positions = np.arange(0, 17, dtype=np.int64)
    assert list(template.frame_indices(positions)) == [0, 1, 2, 1] * 4 + [0]
    assert template.frame_at(5) == 1


def test_a_template_without_latents_is_refused(renderer, template) -> None:
    bare = dataclasses.replace(template, extras={})
    with pytest.raises(ModelError, match="no MuseTalk latents"):
        renderer.render(bare, _job(speech_like(0.4), 0, 2))


def test_cache_key_names_every_weight_file_and_setting(renderer) -> None:
    key = renderer.cache_key()
    assert key["renderer"] == "musetalk"
    for name in ("unet_weights", "unet_config", "vae_weights", "whisper_weights", "dwpose"):
        assert len(key[name]) == 64, name
    assert key["vae_dtype"] == key["unet_dtype"] == key["whisper_dtype"] == "torch.float32"
    assert key["rest_in_silence"] == "False" and key["faces"].endswith("+dwpose")


def test_silent_frames_show_the_templates_own_mouth(template) -> None:
    audio = np.concatenate([np.zeros(16_000 // 2, np.float32), speech_like(0.6, seed=7)])
    job = _job(audio, 0, 25)  # 12.5 silent units, then speech
    rendered = np.stack([np.full((256, 256, 3), 7, np.uint8)] * 25)  # stand-in model output
    frames = template.frame_indices(job.positions)
    out = rest_in_silence(template, job, frames, rendered.copy())
    still = [crop_face(template.frames[f], template.face_boxes[f]) for f in frames]
    for i in range(9):  # deep in the silence: exactly the template's crop
        assert np.array_equal(out[i], still[i])
    speaking = [i for i in range(14, 25) if np.array_equal(out[i], rendered[i])]
    assert len(speaking) >= 6  # voiced frames keep the model's mouth
    # The same frames cut in two windows agree where they meet.
    a = rest_in_silence(template, _job(audio, 0, 13), frames[:13], rendered[:13].copy())
    b = rest_in_silence(template, _job(audio, 13, 12), frames[13:], rendered[13:].copy())
    assert np.array_equal(np.concatenate([a, b]), out)


def test_the_renderer_declares_its_optional_parts(renderer, template) -> None:
    assert isinstance(renderer, OwnFaces) and isinstance(renderer, AudioFeatures)
    job = _job(speech_like(1.0, seed=2), 0, 3)
    features = renderer.audio_features(job)
    assert features.dtype == np.float32 and features.shape[0] == 3
    assert np.array_equal(features, renderer.audio_tokens(job).cpu().numpy())
