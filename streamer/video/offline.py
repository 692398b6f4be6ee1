"""Render a whole audio file on a template to an mp4 (H.264 + AAC), without a session.

`python run.py render --template ID --audio FILE --out OUT.mp4` lands here. The audio is known
in full, so every window is a `final` job over the whole file: the renderer computes its audio
features with the whole file's context, and windowing only bounds the memory.
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from streamer import audio as audio_io
from streamer.avatar.prepared import PreparedTemplate
from streamer.avatar.sources import check_id, discover
from streamer.config import Settings
from streamer.errors import BadInput, NotFound
from streamer.render.base import AudioFeatures, Renderer, RenderJob
from streamer.render.prepare import load_or_prepare
from streamer.render.registry import create_renderer, devices
from streamer.units import (
    FPS,
    MODEL_RATE,
    MODEL_SAMPLES_PER_UNIT,
    OUT_RATE,
    OUT_SAMPLES_PER_UNIT,
)
from streamer.video.compositor import compose

log = logging.getLogger(__name__)


class _Mp4Writer:
    """H.264 video at 25 fps and AAC mono audio at 48 kHz into one mp4."""

    def __init__(self, path: Path, width: int, height: int, preset: str) -> None:
        self.container = av.open(str(path), "w")
        self.video = self.container.add_stream("libx264", rate=FPS, options={"preset": preset})
        self.video.width, self.video.height = width, height
        self.video.pix_fmt = "yuv420p"
        self.audio = self.container.add_stream("aac", rate=OUT_RATE, layout="mono")
        self.frames = 0
        self.samples = 0

    def add_video(self, bgr: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
        frame.pts, frame.time_base = self.frames, Fraction(1, FPS)
        self.container.mux(self.video.encode(frame))
        self.frames += 1

    def add_audio(self, pcm: np.ndarray) -> None:
        """int16 mono samples at 48 kHz."""
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = OUT_RATE, self.samples, Fraction(1, OUT_RATE)
        self.container.mux(self.audio.encode(frame))
        self.samples += pcm.shape[0]

    def close(self) -> None:
        self.container.mux(self.video.encode(None))
        self.container.mux(self.audio.encode(None))
        self.container.close()


def _decode(audio: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """The file at the model rate, at the output rate padded to whole units, and its unit count."""
    model_audio = audio_io.decode_file(audio, MODEL_RATE)
    out_audio = audio_io.to_int16(audio_io.decode_file(audio, OUT_RATE))
    units = -(-len(model_audio) // MODEL_SAMPLES_PER_UNIT)
    if units == 0:
        raise BadInput(f"audio file {audio} is shorter than one frame (40 ms)")
    pcm = np.zeros(units * OUT_SAMPLES_PER_UNIT, np.int16)
    pcm[: min(len(pcm), len(out_audio))] = out_audio[: len(pcm)]
    return model_audio, pcm, units


def _render_all(
    renderer: Renderer,
    template: PreparedTemplate,
    model_audio: np.ndarray,
    pcm: np.ndarray,
    writer: _Mp4Writer,
    batch: int,
    features: list[np.ndarray] | None,
) -> float:
    """Render and write every frame, `batch` at a time; returns the seconds spent rendering."""
    units = len(pcm) // OUT_SAMPLES_PER_UNIT
    render_s = 0.0
    for start in range(0, units, batch):
        positions = np.arange(start, min(units, start + batch), dtype=np.int64)
        job = RenderJob(template.id, positions, model_audio, first_unit=start, final=True)
        tick = time.monotonic()
        crops = renderer.render(template, job)
        render_s += time.monotonic() - tick
        if features is not None and isinstance(renderer, AudioFeatures):
            features.append(renderer.audio_features(job))
        for position, crop in zip(positions, crops, strict=True):
            writer.add_video(compose(template, int(position), crop))
        writer.add_audio(pcm[start * OUT_SAMPLES_PER_UNIT : (start + len(positions)) * OUT_SAMPLES_PER_UNIT])
    return render_s


def render_file(
    settings: Settings,
    template_id: str,
    audio: Path,
    out: Path,
    save_features: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Render `audio` spoken by template `template_id` into `out` (mp4); return the figures.

    `save_features`: also write the MuseTalk audio features [T, 50, 384] float32 (np.save).
    """
    check_id(template_id)
    sources = discover(settings.templates_dir)
    if template_id not in sources:
        raise NotFound(f"no template {template_id!r} in {settings.templates_dir}")
    device = devices(settings)[0]
    started = time.monotonic()
    renderer = create_renderer(settings, device)
    if save_features is not None and not isinstance(renderer, AudioFeatures):
        raise BadInput(f"--save-features needs the musetalk renderer, not {renderer.name}")
    template = load_or_prepare(
        sources[template_id], renderer, settings.cache_dir, progress=progress, models=settings.models
    )
    ready = time.monotonic()
    model_audio, pcm, units = _decode(audio)
    features: list[np.ndarray] | None = [] if save_features is not None else None
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    writer = _Mp4Writer(Path(out), template.width, template.height, settings.x264_preset)
    try:
        render_s = _render_all(renderer, template, model_audio, pcm, writer, max(1, settings.batch_size), features)
    finally:
        writer.close()
    if save_features is not None and features is not None:
        np.save(save_features, np.concatenate(features).astype(np.float32), allow_pickle=False)
    figures = {
        "template": template_id,
        "renderer": renderer.name,
        "device": device,
        "frames": units,
        "seconds": units / FPS,
        "prepare_s": round(ready - started, 3),
        "render_s": round(render_s, 3),
        "render_fps": round(units / render_s, 2) if render_s > 0 else None,
        "total_s": round(time.monotonic() - started, 3),
        "out": str(out),
        "features": str(save_features) if save_features is not None else None,
    }
    log.info("rendered %s: %d frames with %s on %s in %.1f s", out, units, renderer.name, device, figures["total_s"])
    return figures
