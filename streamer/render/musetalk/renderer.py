"""MuseTalk v1.5: cached VAE latents of each template frame + whisper audio → UNet (one step,
t = 0) → VAE decode → 256×256 BGR face crops. Batched, on any torch device."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from streamer.avatar.face import FaceTrack, crop_face
from streamer.avatar.prepared import PreparedTemplate
from streamer.errors import BadInput, ModelError
from streamer.render.base import Preparation, RenderJob
from streamer.render.musetalk import batch
from streamer.render.musetalk.bisenet import FaceParser
from streamer.render.musetalk.faces import face_track, faces_key
from streamer.render.musetalk.features import ROWS_PER_FRAME, SEGMENT_SAMPLES, WhisperFeatures
from streamer.render.musetalk.layout import FACE_PARSE_FILE, Layout, find_layout
from streamer.render.musetalk.models import load_unet, load_vae, load_whisper
from streamer.render.musetalk.positional import positional_encoding
from streamer.render.musetalk.precision import Precision, weights_key
from streamer.render.musetalk.silence import rest_in_silence
from streamer.settings_slices import RenderSettings
from streamer.units import CROP_SIZE, MODEL_SAMPLES_PER_UNIT

log = logging.getLogger(__name__)

PREPARE_VERSION = "2"
LATENT_DTYPE = np.float16
"""Latents are cached in float16 (a quarter of the crops' size; the UNet input tolerates it)."""


class MuseTalkRenderer:
    """The `Renderer` for the official MuseTalk weights under `models`."""

    name = "musetalk"
    audio_context_units = SEGMENT_SAMPLES // MODEL_SAMPLES_PER_UNIT

    def __init__(self, models: Path, device: str, settings: RenderSettings) -> None:
        self.layout = find_layout(Path(models), settings.musetalk_version)
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        if cuda and not torch.cuda.is_available():
            raise BadInput(f"render device {device} asked for, but torch sees no CUDA device")
        self.settings = settings
        self.precision = Precision.of(settings, cuda)
        self.unet_dtype, self.vae_dtype = self.precision.unet, self.precision.vae
        self.batch_size = max(1, int(settings.batch_size))
        self.rest_in_silence = settings.rest_in_silence
        memory = torch.channels_last if cuda else torch.contiguous_format
        self.unet = _place(load_unet(self.layout), self.device, self.unet_dtype, memory)
        # diffusers' AutoencoderKL: its config, encode and decode are untyped
        self.vae: Any = cast(Any, _place(load_vae(self.layout), self.device, self.vae_dtype, memory))
        self.scaling = float(self.vae.config.scaling_factor)
        extractor, encoder = load_whisper(self.layout)
        encoder = encoder.to(self.device, self.precision.whisper)
        self.features = WhisperFeatures(extractor, encoder, self.device)
        tokens = ROWS_PER_FRAME * self.features.layers  # 10 rows × 5 hidden states = 50
        self.pe = positional_encoding(tokens, self.features.dim).to(self.device, self.precision.pe)
        self.timestep = torch.zeros(1, device=self.device, dtype=torch.long)
        self.parser = _face_parser(self.layout, settings, self.device)
        self._unet = torch.compile(self.unet) if settings.compile else self.unet
        self._decode = torch.compile(self.vae.decode) if settings.compile else self.vae.decode
        self._pin = cuda
        self._key: dict[str, str] | None = None
        log.info("musetalk %s loaded on %s (%s)", self.layout.version, self.device, self.precision)

    # -- preparation -------------------------------------------------------------------------

    def cache_key(self) -> dict[str, str]:
        """Every weight file and setting that shapes the cache (latents, masks, boxes and the
        welcome clip, which the UNet, whisper and rest-in-silence render)."""
        if self._key is None:
            store = Path(self.settings.cache_dir) / "hashes.json"
            self._key = {
                "renderer": self.name,
                "prepare_version": PREPARE_VERSION,
                "musetalk_version": self.layout.version,
                **weights_key(self.layout, store),
                **self.precision.key(),
                "latent_dtype": np.dtype(LATENT_DTYPE).name,
                "rest_in_silence": str(self.rest_in_silence),
                **faces_key(self.layout, self.settings, store),
            }
        return dict(self._key)

    def faces(self, frames: np.ndarray, name: str, progress: Callable[[int, int], None] | None = None) -> FaceTrack:
        """Face boxes as the official preprocessing takes them (DWPose landmarks)."""
        return face_track(self.layout, self.settings, self.device, frames, name, progress)

    @torch.inference_mode()
    def encode_crops(self, crops: np.ndarray) -> torch.Tensor:
        """[B, 8, 32, 32] UNet input (masked | reference latents) of [B, 256, 256, 3] BGR crops."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
        rgb = x.flip(-1).permute(0, 3, 1, 2).float() / 255.0
        masked = rgb.clone()
        masked[:, :, CROP_SIZE // 2 :, :] = 0  # lower half hidden, before normalising
        both = ((torch.cat([masked, rgb]) - 0.5) / 0.5).contiguous()
        dist = self.vae.encode(both.to(self.vae_dtype)).latent_dist
        latents = dist.mean.float() * self.scaling  # the mean, not a sample: deterministic
        b = crops.shape[0]
        return torch.cat([latents[:b], latents[b:]], dim=1)

    def prepare(self, template: PreparedTemplate, progress: Callable[[int, int], None] | None = None) -> Preparation:
        """`latents` [N, 8, 32, 32] float16, and blend masks [N, 256, 256] uint8 over the
        template's blend boxes unless `musetalk_mask = "geometric"`."""
        n = template.frame_count
        out = np.empty((n, 8, CROP_SIZE // 8, CROP_SIZE // 8), dtype=LATENT_DTYPE)
        for start in range(0, n, self.batch_size):
            stop = min(n, start + self.batch_size)
            crops = np.stack([crop_face(template.frames[i], template.face_boxes[i]) for i in range(start, stop)])
            out[start:stop] = self.encode_crops(crops).cpu().numpy().astype(LATENT_DTYPE)
            if progress is not None:
                progress(stop, n)
        if self.parser is None:
            return Preparation({"latents": out})
        masks = self.parser.masks(template.frames, template.face_boxes, template.blend_boxes)
        return Preparation({"latents": out}, blend_masks=masks)

    # -- rendering ---------------------------------------------------------------------------

    def audio_tokens(self, job: RenderJob) -> torch.Tensor:
        """[T, 50, 384] float32 whisper tokens of the job's frames (before the positional encoding)."""
        return self.features.windows(job.audio, job.first_unit, job.frames, job.final)

    def audio_features(self, job: RenderJob) -> np.ndarray:
        """`audio_tokens` on the host (the `AudioFeatures` part of the contract)."""
        features: np.ndarray = self.audio_tokens(job).float().cpu().numpy()
        return features

    def _upload(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self._pin:
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def _crops(self, latents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """One batch: UNet at t = 0 → VAE decode → [B, 256, 256, 3] uint8 BGR on the device."""
        pred = self._unet(latents, self.timestep, encoder_hidden_states=tokens).sample
        image = self._decode(pred.to(self.vae_dtype) / self.scaling).sample
        image = ((image.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        out: torch.Tensor = image.flip(1).permute(0, 2, 3, 1)
        return out

    @torch.inference_mode()
    def render(self, template: PreparedTemplate, job: RenderJob) -> np.ndarray:
        latents = template.extras.get("latents")
        if latents is None or latents.shape[0] != template.frame_count:
            raise ModelError(f"template {template.id!r} has no MuseTalk latents; prepare it with this renderer")
        count = job.frames
        out = torch.empty((count, CROP_SIZE, CROP_SIZE, 3), dtype=torch.uint8, pin_memory=self._pin)
        if count == 0:
            return out.numpy()
        tokens = (self.audio_tokens(job).to(self.pe.dtype) + self.pe).to(self.unet_dtype)
        frames = template.frame_indices(job.positions)
        for start in range(0, count, self.batch_size):
            stop = min(count, start + self.batch_size)
            batch = self._upload(latents[frames[start:stop]]).to(self.unet_dtype)
            out[start:stop].copy_(self._crops(batch, tokens[start:stop]), non_blocking=self._pin)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        crops = out.numpy()
        return rest_in_silence(template, job, frames, crops) if self.rest_in_silence else crops

    def render_batch(self, items: Sequence[tuple[PreparedTemplate, RenderJob]]) -> list[np.ndarray]:
        """Several jobs (any sessions, any templates) in shared model calls; see `batch.py`."""
        return batch.render_batch(self, items)


def _face_parser(layout: Layout, settings: RenderSettings, device: torch.device) -> FaceParser | None:
    """BiSeNet, or None when `musetalk_mask = "geometric"` asks for the fixed jaw mask (the
    templates are then labelled degraded); ModelError naming the file when it is missing."""
    if settings.musetalk_mask == "geometric":
        log.warning("musetalk: blending with the geometric mask, no face parsing (degraded)")
        return None
    if layout.face_parse is None:
        raise ModelError(
            f"MuseTalk blends with face parsing: {layout.root / 'face-parse-bisent' / FACE_PARSE_FILE} is missing. "
            'Install it, or set musetalk_mask = "geometric" to blend with a fixed jaw mask (labelled degraded)'
        )
    return FaceParser(layout.face_parse, device)


def _place(
    module: torch.nn.Module, device: torch.device, dtype: torch.dtype, memory: torch.memory_format
) -> torch.nn.Module:
    module = module.to(device=device, memory_format=memory)  # type: ignore[call-overload]  # Module.to takes memory_format; torch's overloads omit it
    return module if dtype == torch.float32 else module.to(dtype)
