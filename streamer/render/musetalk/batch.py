"""Windows of several sessions and templates in one UNet and one VAE-decode call per batch.

Each job keeps its own whisper features, latents and silence blending; only the model calls
are shared, `batch_size` frames at a time, so a batch gives the same crops as the jobs alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from streamer.avatar.prepared import PreparedTemplate
from streamer.errors import ModelError
from streamer.render.base import RenderJob
from streamer.render.musetalk.silence import rest_in_silence
from streamer.units import CROP_SIZE


class BatchModel(Protocol):
    """What a batch needs of the renderer (a `MuseTalkRenderer` is one): its models' calls."""

    batch_size: int
    device: torch.device
    pe: torch.Tensor
    unet_dtype: torch.dtype
    rest_in_silence: bool
    _pin: bool

    def audio_tokens(self, job: RenderJob) -> torch.Tensor: ...

    def _upload(self, array: np.ndarray) -> torch.Tensor: ...

    def _crops(self, latents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor: ...


def _latents(template: PreparedTemplate) -> np.ndarray:
    latents = template.extras.get("latents")
    if latents is None or latents.shape[0] != template.frame_count:
        raise ModelError(f"template {template.id!r} has no MuseTalk latents; prepare it with this renderer")
    return latents


@torch.inference_mode()
def render_batch(renderer: BatchModel, items: Sequence[tuple[PreparedTemplate, RenderJob]]) -> list[np.ndarray]:
    """[T_i, 256, 256, 3] uint8 BGR crops of each job, the model called over all their frames."""
    frames = [t.frame_indices(j.positions) for t, j in items]
    total = sum(len(f) for f in frames)
    out = torch.empty((total, CROP_SIZE, CROP_SIZE, 3), dtype=torch.uint8, pin_memory=renderer._pin)
    if total:
        latents = np.concatenate([_latents(t)[f] for (t, _), f in zip(items, frames, strict=True)])
        tokens = torch.cat([renderer.audio_tokens(j) for _, j in items if j.frames])
        tokens = (tokens.to(renderer.pe.dtype) + renderer.pe).to(renderer.unet_dtype)
        for start in range(0, total, renderer.batch_size):
            stop = min(total, start + renderer.batch_size)
            batch = renderer._upload(latents[start:stop]).to(renderer.unet_dtype)
            out[start:stop].copy_(renderer._crops(batch, tokens[start:stop]), non_blocking=renderer._pin)
        if renderer.device.type == "cuda":
            torch.cuda.synchronize(renderer.device)
    crops = out.numpy()
    results, start = [], 0
    for (template, job), f in zip(items, frames, strict=True):
        mine = crops[start : start + len(f)]
        start += len(f)
        results.append(rest_in_silence(template, job, f, mine) if renderer.rest_in_silence else mine)
    return results
