"""The sinusoidal positional encoding MuseTalk adds to the audio tokens before the UNet."""

from __future__ import annotations

import math

import torch


def positional_encoding(length: int, d_model: int = 384) -> torch.Tensor:
    """[length, d_model] float32: sin on even channels, cos on odd, base 10000."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    return pe
