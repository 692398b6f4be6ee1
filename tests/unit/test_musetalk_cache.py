"""The MuseTalk cache key: every weight file and setting that shapes the cache invalidates it;
without landmarks preparation refuses, or with `musetalk_faces = "haar"` labels the template."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streamer.avatar.sources import discover
from streamer.config import Settings
from streamer.errors import BadInput, ModelError
from streamer.render.musetalk import MuseTalkRenderer
from streamer.render.prepare import is_fresh, load_or_prepare
from tests.support.tiny_musetalk import build_tiny_models, tiny_musetalk_settings


def _perturb(path: Path) -> None:
    """Same structure, different weights: the first floating tensor moves by 0.5."""
    data = torch.load(path, weights_only=True)
    state = data.get("state_dict", data)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] + 0.5
    torch.save(data, path)


@pytest.fixture(scope="module")
def install(tmp_path_factory):
    root = tmp_path_factory.mktemp("mt")
    settings = tiny_musetalk_settings(root, batch_size=4)
    build_tiny_models(settings.models, face_parse=True)
    return settings, discover(settings.templates_dir)["astronaut"]


def test_swapping_the_unet_re_renders_the_welcome(install) -> None:
    settings, source = install
    first = load_or_prepare(
        source, MuseTalkRenderer(settings.models, "cpu", settings), settings.cache_dir, progress=False
    )
    assert first.welcome is not None and first.degraded and first.faces == "haar"
    _perturb(settings.models / "musetalkV15" / "unet.pth")
    renderer = MuseTalkRenderer(settings.models, "cpu", settings)
    assert not is_fresh(source, renderer, settings.cache_dir)
    again = load_or_prepare(source, renderer, settings.cache_dir, progress=False)
    assert not np.array_equal(again.welcome.crops, first.welcome.crops)  # the new model's welcome
    assert is_fresh(source, renderer, settings.cache_dir)
    manifest = json.loads((settings.cache_dir / "musetalk" / "astronaut" / "manifest.json").read_text())
    assert manifest["template"]["degraded"] is True and manifest["template"]["faces"] == "haar"


@pytest.mark.parametrize(
    "name, field",
    [
        ("whisper/pytorch_model.bin", "whisper_weights"),
        ("sd-vae/diffusion_pytorch_model.bin", "vae_weights"),
        ("face-parse-bisent/79999_iter.pth", "face_parse"),
    ],
)
def test_each_weight_file_is_in_the_key(install, name: str, field: str) -> None:
    settings, source = install
    before = MuseTalkRenderer(settings.models, "cpu", settings)
    load_or_prepare(source, before, settings.cache_dir, progress=False)
    _perturb(settings.models / name)
    after = MuseTalkRenderer(settings.models, "cpu", settings)
    changed = {k for k, v in after.cache_key().items() if before.cache_key()[k] != v}
    assert changed == {field}
    assert not is_fresh(source, after, settings.cache_dir)


def test_settings_and_dwpose_are_in_the_key(install) -> None:
    settings, _ = install
    base = MuseTalkRenderer(settings.models, "cpu", settings).cache_key()
    quiet = MuseTalkRenderer(settings.models, "cpu", dataclasses.replace(settings, rest_in_silence=False))
    assert {k for k, v in quiet.cache_key().items() if base[k] != v} == {"rest_in_silence"}
    landmarks = dataclasses.replace(settings, musetalk_faces="dwpose")
    key = MuseTalkRenderer(settings.models, "cpu", landmarks).cache_key()
    assert key["faces"].endswith("+dwpose") and len(key["dwpose"]) == 64
    _perturb(settings.models / "dwpose" / "dw-ll_ucoco_384.pth")
    assert MuseTalkRenderer(settings.models, "cpu", landmarks).cache_key()["dwpose"] != key["dwpose"]


def test_without_landmarks_preparation_refuses_and_names_the_file(tmp_path: Path) -> None:
    settings = tiny_musetalk_settings(tmp_path, musetalk_faces="auto")
    (settings.models / "dwpose" / "dw-ll_ucoco_384.pth").unlink()
    renderer = MuseTalkRenderer(settings.models, "cpu", settings)
    source = discover(settings.templates_dir)["astronaut"]
    with pytest.raises(ModelError, match=r"dwpose/dw-ll_ucoco_384\.pth is missing"):
        load_or_prepare(source, renderer, settings.cache_dir, progress=False)


def test_dwpose_landmarks_frame_the_crops_when_present(tmp_path: Path, monkeypatch) -> None:
    """`auto` with the official layout takes DWPose's points (injected here: random weights
    would give random boxes) through the official box rule; nothing is downloaded."""
    from streamer.render.musetalk import landmarks

    settings = tiny_musetalk_settings(tmp_path, musetalk_faces="auto", musetalk_mask="bisenet")
    points = np.zeros((68, 2))
    points[:, 0] = np.linspace(180, 270, 68)
    points[:, 1] = np.linspace(90, 170, 68)
    points[29] = [225, 120]
    monkeypatch.setattr(landmarks.FaceLandmarks, "__call__", lambda self, frame: points)
    renderer = MuseTalkRenderer(settings.models, "cpu", settings)
    track = renderer.faces(np.zeros((1, 300, 400, 3), np.uint8), "t")
    assert track.source == "dwpose" and not track.degraded
    assert track.boxes[0].tolist() == [180, 70, 270, 180]  # 120 - (170 - 120) = 70; 170 + 10


def test_without_face_parsing_the_renderer_refuses_unless_told_and_then_says_degraded(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    from streamer.avatar.masks import jaw_masks
    from streamer.render.musetalk import landmarks

    with pytest.raises(BadInput, match="musetalk_mask"):
        Settings(musetalk_mask="parsing").validate()
    settings = tiny_musetalk_settings(tmp_path, musetalk_faces="auto", musetalk_mask="bisenet")
    (settings.models / "face-parse-bisent" / "79999_iter.pth").unlink()
    with pytest.raises(ModelError, match=r"face-parse-bisent/79999_iter\.pth is missing.*musetalk_mask"):
        MuseTalkRenderer(settings.models, "cpu", settings)
    points = np.zeros((68, 2))
    points[:, 0], points[:, 1] = np.linspace(180, 270, 68), np.linspace(90, 170, 68)
    points[29] = [225, 120]
    monkeypatch.setattr(landmarks.FaceLandmarks, "__call__", lambda self, frame: points)
    geometric = dataclasses.replace(settings, musetalk_mask="geometric")
    renderer = MuseTalkRenderer(settings.models, "cpu", geometric)
    assert renderer.cache_key()["mask"] == "geometric" and renderer.cache_key()["face_parse"] == "none"
    source = discover(settings.templates_dir)["astronaut"]
    with caplog.at_level("WARNING"):
        template = load_or_prepare(source, renderer, settings.cache_dir, progress=False)
    assert template.degraded and template.faces == "dwpose"  # landmarks, but no face parsing
    assert np.array_equal(template.blend_masks, jaw_masks(template.face_boxes, template.blend_boxes))
    assert "prepared degraded: geometric blend mask, no face parsing" in caplog.text
    manifest = json.loads((settings.cache_dir / "musetalk" / "astronaut" / "manifest.json").read_text())
    assert manifest["template"]["degraded"] is True
