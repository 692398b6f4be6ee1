"""Build MuseTalk's three networks from their configs and load the official weights strictly."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from streamer.errors import ModelError
from streamer.render.musetalk.layout import Layout, load_strict, read_config, read_state_dict

log = logging.getLogger(__name__)

# sd-vae-ft-mse was saved by diffusers 0.4, whose attention blocks used these names.
_OLD_VAE_ATTENTION = re.compile(r"(\.attentions\.\d+\.)(query|key|value|proj_attn)\.")
_NEW_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _loaded(kind: str, module: torch.nn.Module, source: Path) -> torch.nn.Module:
    count = sum(p.numel() for p in module.parameters())
    log.info("loaded the %s from %s (%.1f M parameters)", kind, source, count / 1e6)
    return module.eval().requires_grad_(False)


def _build(kind: str, factory: Callable[[Any], torch.nn.Module], config: Any, source: Path) -> torch.nn.Module:
    try:
        module: torch.nn.Module = factory(config)
        return module
    except Exception as exc:  # noqa: BLE001 - a config with wrong fields fails inside the library
        raise ModelError(f"cannot build the {kind} from {source}: {exc}") from None


def load_unet(layout: Layout) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    config = read_config(layout.unet_config)
    unet = _build("UNet", UNet2DConditionModel.from_config, config, layout.unet_config)
    load_strict(unet, read_state_dict(layout.unet_weights), layout.unet_weights)
    return _loaded("UNet", unet, layout.unet_weights)


def rename_old_vae_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map diffusers-0.4 VAE attention names (query/key/value/proj_attn) to today's."""
    out = {}
    for key, value in state.items():
        new = _OLD_VAE_ATTENTION.sub(lambda m: m.group(1) + _NEW_NAMES[m.group(2)] + ".", key)
        if new != key and value.ndim == 4 and value.shape[2:] == (1, 1):
            value = value[:, :, 0, 0]  # 1×1 convolutions of the original checkpoints
        out[new] = value
    return out


def load_vae(layout: Layout) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    config = read_config(layout.vae_config)
    vae = _build("VAE", AutoencoderKL.from_config, config, layout.vae_config)
    state = rename_old_vae_keys(read_state_dict(layout.vae_weights))
    load_strict(vae, state, layout.vae_weights)
    return _loaded("VAE", vae, layout.vae_weights)


def load_whisper(layout: Layout) -> tuple[Any, torch.nn.Module]:
    """(WhisperFeatureExtractor, WhisperEncoder): only the encoder of the checkpoint is used."""
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    try:
        extractor = WhisperFeatureExtractor.from_pretrained(str(layout.whisper_dir), local_files_only=True)
        config = WhisperConfig.from_json_file(str(layout.whisper_config))
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds for a missing or bad config
        raise ModelError(f"cannot read the whisper configs in {layout.whisper_dir}: {exc}") from None
    encoder = _build("whisper encoder", WhisperEncoder, config, layout.whisper_config)
    state = {}
    for key, value in read_state_dict(layout.whisper_weights).items():
        key = key.removeprefix("model.")
        if key.startswith("encoder."):
            state[key.removeprefix("encoder.")] = value
    if not state:
        raise ModelError(f"{layout.whisper_weights} holds no whisper encoder weights")
    load_strict(encoder, state, layout.whisper_weights)
    return extractor, _loaded("whisper encoder", encoder, layout.whisper_weights)
