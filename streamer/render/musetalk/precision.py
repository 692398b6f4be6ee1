"""Which dtype each MuseTalk part runs in, and the weight hashes of the cache key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from streamer.avatar.hashing import file_sha256
from streamer.render.musetalk.layout import Layout
from streamer.settings_slices import RenderSettings


@dataclass(frozen=True)
class Precision:
    """CPU: everything fp32. CUDA: the UNet in fp16 (`fp16`), the VAE in fp16 only when asked
    (`vae_fp16`), and with `realtime_fp16` whisper, the VAE and the positional encoding in fp16
    as well, as the official realtime script runs them."""

    unet: torch.dtype
    vae: torch.dtype
    whisper: torch.dtype
    pe: torch.dtype

    @classmethod
    def of(cls, settings: RenderSettings, cuda: bool) -> Precision:
        half, full = torch.float16, torch.float32
        if not cuda:
            return cls(full, full, full, full)
        everything = settings.realtime_fp16
        return cls(
            unet=half if settings.fp16 or everything else full,
            vae=half if settings.vae_fp16 or everything else full,
            whisper=half if everything else full,
            pe=half if everything else full,
        )

    def key(self) -> dict[str, str]:
        return {f"{part}_dtype": str(getattr(self, part)) for part in ("unet", "vae", "whisper", "pe")}

    def __str__(self) -> str:
        return ", ".join(f"{k} {v.removeprefix('torch.')}" for k, v in self.key().items())


def weights_key(layout: Layout, store: Path | None) -> dict[str, str]:
    """SHA-256 of every model file the render path reads (hashed once per size and mtime)."""
    files = {
        "unet_weights": layout.unet_weights,
        "unet_config": layout.unet_config,
        "vae_weights": layout.vae_weights,
        "vae_config": layout.vae_config,
        "whisper_weights": layout.whisper_weights,
        "whisper_config": layout.whisper_config,
        "whisper_preprocessor": layout.whisper_dir / "preprocessor_config.json",
    }
    key = {name: file_sha256(path, store) for name, path in files.items()}
    key["face_parse"] = file_sha256(layout.face_parse, store) if layout.face_parse else "none"
    return key
