"""A simulated render device: sleeps by a cost model instead of computing.

A call of n frames takes `fixed_ms + n × per_frame_ms` (the shape of a GPU model call: a
fixed launch and transfer cost, then a cost per frame; a call of more than `batch_size`
frames is several calls, as the model renderers chunk it), so scheduling, batching and capacity
can be tested and planned without GPUs. Its crops are the template's own, with the lite
renderer's mouth at a few openings chosen by the audio level, made once per frame and kept:
streams look alive while the host CPU stays almost idle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from streamer.avatar.face import crop_face
from streamer.avatar.prepared import PreparedTemplate
from streamer.render.base import Preparation, RenderJob
from streamer.render.lite import openings, speak
from streamer.units import CROP_SIZE

LEVELS = 4
"""Mouth openings kept per template frame: shut, and three steps up to fully open."""


class SimRenderer:
    name = "sim"
    audio_context_units = 0

    def __init__(
        self,
        fixed_ms: float,
        per_frame_ms: float,
        batch_size: int = 32,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.fixed_s = fixed_ms / 1000.0
        self.per_frame_s = per_frame_ms / 1000.0
        self.batch_size = max(1, batch_size)
        self._sleep = sleep
        self._clock = clock
        self._crops: dict[tuple[str, int, int], np.ndarray] = {}

    def prepare(self, template: PreparedTemplate, progress: Callable[[int, int], None] | None = None) -> Preparation:
        if progress is not None:
            progress(template.frame_count, template.frame_count)
        return Preparation()

    def cache_key(self) -> dict[str, str]:
        return {"sim": "1"}

    def cost_s(self, frames: int) -> float:
        """Seconds one call of `frames` frames takes."""
        return -(-frames // self.batch_size) * self.fixed_s + frames * self.per_frame_s

    def render(self, template: PreparedTemplate, job: RenderJob) -> np.ndarray:
        return self.render_batch([(template, job)])[0]

    def render_batch(self, items: Sequence[tuple[PreparedTemplate, RenderJob]]) -> list[np.ndarray]:
        started = self._clock()
        out = [self._looks(template, job) for template, job in items]
        spent = self._clock() - started
        self._sleep(max(0.0, self.cost_s(sum(job.frames for _, job in items)) - spent))
        return out

    def _looks(self, template: PreparedTemplate, job: RenderJob) -> np.ndarray:
        levels = np.ceil(openings(job.audio, job.first_unit, job.frames) * (LEVELS - 1)).astype(int)
        crops = [
            self._crop(template, template.frame_at(int(p)), int(k)) for p, k in zip(job.positions, levels, strict=True)
        ]
        return np.stack(crops) if crops else np.empty((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)

    def _crop(self, template: PreparedTemplate, frame: int, level: int) -> np.ndarray:
        key = (template.id, frame, level)
        crop = self._crops.get(key)
        if crop is None:
            still = crop_face(template.frames[frame], template.face_boxes[frame])
            mouth = (float(template.mouth[frame, 0]), float(template.mouth[frame, 1]))
            crop = self._crops[key] = speak(still, mouth, level / (LEVELS - 1))
        return crop
