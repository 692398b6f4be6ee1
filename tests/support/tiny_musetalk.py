"""Tiny random MuseTalk weights in the official layout, for tests and the CPU benchmark.

Same module structure as the real models (UNet in 8 / out 4 / cross-attention 384, SD VAE with
4 latent channels and ×8 downsampling, whisper encoder with d_model 384 and 4 layers so it
yields 5 hidden states, DWPose's CSPNeXt + SimCC head), only fewer channels. Written the way the
official files are: bare UNet keys in a torch file, the VAE with diffusers-0.4 attention names,
the whisper checkpoint with `model.`-prefixed keys, DWPose as an mmpose checkpoint.

Whisper's sinusoidal position embedding and its attention outputs are scaled down
(`POSITION_SCALE`, `ATTENTION_SCALE`): with random weights the positions dominate every hidden
state, and random attention averages the whole 30 s window into every frame, so features of two
different sentences would look alike (cosine distance 0.003, less than a streamed window's
distance to the same audio's). Scaled, the audio decides the features, as in the trained model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from streamer.config import Settings

UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0.dev0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [32, 64, 128, 128],
    "center_input_sample": False,
    "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 8,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
FULL_UNET_CONFIG = {**UNET_CONFIG, "block_out_channels": [320, 640, 1280, 1280]}

VAE_CONFIG = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.4.2",
    "act_fn": "silu",
    "block_out_channels": [8, 16, 32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 8,
    "out_channels": 3,
    "sample_size": 256,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
FULL_VAE_CONFIG = {**VAE_CONFIG, "block_out_channels": [128, 256, 512, 512], "norm_num_groups": 32}

WHISPER_CONFIG: dict[str, Any] = {
    "vocab_size": 64,
    "num_mel_bins": 80,
    "d_model": 384,
    "encoder_layers": 4,
    "encoder_attention_heads": 4,
    "encoder_ffn_dim": 256,
    "decoder_layers": 1,
    "decoder_attention_heads": 4,
    "decoder_ffn_dim": 256,
    "max_source_positions": 1500,
    "max_target_positions": 16,
    "pad_token_id": 1,
    "bos_token_id": 2,
    "eos_token_id": 2,
    "decoder_start_token_id": 3,
}
FULL_WHISPER_CONFIG = {**WHISPER_CONFIG, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536}
POSITION_SCALE = 0.02
ATTENTION_SCALE = 0.1
TINY_DWPOSE: dict[str, Any] = {"widen": 0.125, "deepen": 1 / 3, "hidden": 32, "s": 16}


def _old_vae_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    back = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    out = {}
    for key, value in state.items():
        if ".attentions." in key:
            for new, old in back.items():
                key = key.replace(new, old)
        out[key] = value
    return out


def build_tiny_models(
    root: Path, seed: int = 0, full: bool = False, face_parse: bool = True, dwpose: bool = True
) -> Path:
    """Write random weights in the official layout under `root`; returns `root`.

    `full` uses the real channel counts (for GPU benchmarks; about 4 GB of files).
    `face_parse` adds a random BiSeNet (always its real size, 50 MB; without it the renderer
    needs `musetalk_mask = "geometric"`).
    `dwpose` adds a random DWPose (tiny, or the real size with `full`): its landmarks are
    random, so tests that prepare templates set `musetalk_faces = "haar"` or inject landmarks.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    root = Path(root)
    torch.manual_seed(seed)
    unet_config = FULL_UNET_CONFIG if full else UNET_CONFIG
    unet_dir = root / "musetalkV15"
    unet_dir.mkdir(parents=True, exist_ok=True)
    (unet_dir / "musetalk.json").write_text(json.dumps(unet_config, indent=2))
    unet = UNet2DConditionModel.from_config(unet_config)  # type: ignore[no-untyped-call]  # diffusers leaves it untyped
    torch.save(unet.state_dict(), unet_dir / "unet.pth")

    vae_config = FULL_VAE_CONFIG if full else VAE_CONFIG
    vae_dir = root / "sd-vae"
    vae_dir.mkdir(parents=True, exist_ok=True)
    (vae_dir / "config.json").write_text(json.dumps(vae_config, indent=2))
    vae = AutoencoderKL.from_config(vae_config)  # type: ignore[no-untyped-call]  # diffusers leaves it untyped
    torch.save(_old_vae_names(vae.state_dict()), vae_dir / "diffusion_pytorch_model.bin")

    whisper_dir = root / "whisper"
    config = WhisperConfig(**(FULL_WHISPER_CONFIG if full else WHISPER_CONFIG))
    whisper = WhisperForConditionalGeneration(config)
    config.save_pretrained(whisper_dir)
    with torch.no_grad():
        whisper.model.encoder.embed_positions.weight.mul_(POSITION_SCALE)
        for layer in whisper.model.encoder.layers:
            layer.self_attn.out_proj.weight.mul_(ATTENTION_SCALE)
    state = {k: v.contiguous() for k, v in whisper.state_dict().items()}
    torch.save(state, whisper_dir / "pytorch_model.bin")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(whisper_dir)  # type: ignore[no-untyped-call]  # transformers leaves it untyped

    if face_parse:
        from streamer.render.musetalk.bisenet import BiSeNet

        (root / "face-parse-bisent").mkdir(exist_ok=True)
        torch.save(BiSeNet().state_dict(), root / "face-parse-bisent" / "79999_iter.pth")
    if dwpose:
        write_tiny_dwpose(root / "dwpose" / "dw-ll_ucoco_384.pth", full)
    return root


def write_tiny_dwpose(path: Path, full: bool = False) -> Path:
    """Random DWPose weights as an mmpose checkpoint (`state_dict` + `meta`)."""
    from streamer.render.musetalk.dwpose import DWPose, DWPoseConfig

    net = DWPose(DWPoseConfig() if full else DWPoseConfig(**TINY_DWPOSE))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {"note": "random test weights"}, "state_dict": net.state_dict()}, path)
    return path


def speech_like(seconds: float, seed: int = 0, rate: int = 16_000) -> np.ndarray:
    """Deterministic voiced-speech stand-in: gliding harmonics under a ~4 Hz syllable envelope."""

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None)
    noise = 0.02 * rng.standard_normal(t.shape)
    return (0.3 * voiced * envelope + noise).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16_000) -> Path:
    """16-bit mono WAV of float samples in [-1, 1]."""
    import wave

    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def tiny_musetalk_settings(root: Path, **overrides: Any) -> Settings:
    """Settings for a MuseTalk install of tiny weights and a one-photo templates folder.

    The welcome line is short: preparation renders it, and that is slow on the CPU. Haar boxes
    and the geometric mask (labelled degraded) stand in for the random landmarks and parsing.
    """
    import json
    import shutil

    from streamer.config import ROOT, Settings

    templates = root / "templates"
    templates.mkdir(parents=True)
    shutil.copy(ROOT / "templates" / "astronaut.png", templates / "astronaut.png")
    write_wav(templates / "hi.wav", speech_like(0.3, seed=9))
    (templates / "astronaut.json").write_text(json.dumps({"name": "A", "welcome_audio": "hi.wav"}))
    # Random DWPose weights give random boxes, random BiSeNet weights near-empty masks.
    options = {"musetalk_faces": "haar", "musetalk_mask": "geometric", **overrides}
    return Settings(
        templates_dir=templates,
        cache_dir=root / "cache",
        renderer="musetalk",
        models=build_tiny_models(root / "models"),
        devices=("cpu",),
        **options,
    )
