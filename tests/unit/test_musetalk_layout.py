"""The official weights layout: detection, strict loading and clear errors (tiny random weights)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from streamer.errors import ModelError
from streamer.render.musetalk import has_weights
from streamer.render.musetalk.layout import find_layout
from streamer.render.musetalk.models import load_unet, load_vae, load_whisper, rename_old_vae_keys
from tests.support.tiny_musetalk import (
    FULL_UNET_CONFIG,
    FULL_VAE_CONFIG,
    UNET_CONFIG,
    VAE_CONFIG,
    build_tiny_models,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return build_tiny_models(tmp_path_factory.mktemp("musetalk") / "models", face_parse=False)


@pytest.fixture
def models(pristine: Path, tmp_path: Path) -> Path:
    """A private copy each test may damage."""
    return Path(shutil.copytree(pristine, tmp_path / "models"))


def test_the_official_layout_loads_strictly(pristine: Path) -> None:
    layout = find_layout(pristine)
    assert has_weights(pristine)
    assert layout.face_parse is None
    unet = load_unet(layout)
    assert unet.config.in_channels == 8 and unet.config.cross_attention_dim == 384
    saved = torch.load(layout.unet_weights, weights_only=True)
    assert torch.equal(unet.state_dict()["conv_in.weight"], saved["conv_in.weight"])
    vae = load_vae(layout)
    assert vae.config.latent_channels == 4
    _, encoder = load_whisper(layout)
    assert encoder.config.d_model == 384 and encoder.config.encoder_layers == 4


def test_tiny_models_have_the_real_structure() -> None:
    """Same state-dict keys as the real sizes (the official unet.pth: 686 tensors, 849.9 M)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        real = UNet2DConditionModel.from_config(FULL_UNET_CONFIG).state_dict()
        tiny = UNet2DConditionModel.from_config(UNET_CONFIG).state_dict()
        assert set(real) == set(tiny) and len(real) == 686
        assert round(sum(v.numel() for v in real.values()) / 1e6, 1) == 849.9
        real_vae = AutoencoderKL.from_config(FULL_VAE_CONFIG).state_dict()
        assert set(real_vae) == set(AutoencoderKL.from_config(VAE_CONFIG).state_dict())


def test_old_vae_attention_names_are_mapped_to_todays() -> None:
    state = {
        "encoder.mid_block.attentions.0.query.weight": torch.ones(4, 4, 1, 1),
        "encoder.mid_block.attentions.0.proj_attn.bias": torch.ones(4),
        "decoder.conv_in.weight": torch.ones(1),
    }
    renamed = rename_old_vae_keys(state)
    assert renamed["encoder.mid_block.attentions.0.to_q.weight"].shape == (4, 4)
    assert "encoder.mid_block.attentions.0.to_out.0.bias" in renamed
    assert "decoder.conv_in.weight" in renamed


def test_a_missing_folder_names_the_path(tmp_path: Path) -> None:
    gone = tmp_path / "nowhere"
    with pytest.raises(ModelError, match=str(gone)):
        find_layout(gone)
    assert not has_weights(gone)
    assert not has_weights(None)


def test_a_missing_file_is_named(models: Path) -> None:
    (models / "musetalkV15" / "unet.pth").unlink()
    with pytest.raises(ModelError, match=r"musetalkV15/unet\.pth"):
        find_layout(models)
    assert not has_weights(models)


def test_v10_is_refused_clearly(models: Path) -> None:
    with pytest.raises(ModelError, match=r"v1\.0 is not supported"):
        find_layout(models, "v10")


def test_a_missing_key_is_named(models: Path) -> None:
    path = models / "musetalkV15" / "unet.pth"
    state = torch.load(path, weights_only=True)
    del state["conv_out.bias"]
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"missing keys: conv_out\.bias"):
        load_unet(find_layout(models))


def test_an_unexpected_key_is_named(models: Path) -> None:
    path = models / "musetalkV15" / "unet.pth"
    state = torch.load(path, weights_only=True)
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"unexpected keys: extra\.weight"):
        load_unet(find_layout(models))


def test_a_wrong_shape_is_named(models: Path) -> None:
    path = models / "sd-vae" / "diffusion_pytorch_model.bin"
    state = torch.load(path, weights_only=True)
    state["decoder.conv_out.bias"] = torch.zeros(7)
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"wrong shapes: decoder\.conv_out\.bias \(7,\) != \(3,\)"):
        load_vae(find_layout(models))


def test_a_truncated_file_is_reported(models: Path) -> None:
    path = models / "whisper" / "pytorch_model.bin"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        load_whisper(find_layout(models))


def test_a_pickled_object_is_not_loaded(models: Path) -> None:
    path = models / "musetalkV15" / "unet.pth"
    torch.save({"conv_in.weight": torch.zeros(1), "note": object()}, path)
    with pytest.raises(ModelError, match=str(path)):
        load_unet(find_layout(models))


def test_face_parsing_weights_are_optional_and_found(models: Path) -> None:
    folder = models / "face-parse-bisent"
    folder.mkdir()
    (folder / "79999_iter.pth").write_bytes(b"")
    assert find_layout(models).face_parse == folder / "79999_iter.pth"
