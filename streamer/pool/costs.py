"""A worker's cost curve: seconds of one model call of n frames, measured at start."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from streamer.avatar.prepared import PreparedTemplate
from streamer.render.base import Renderer, RenderJob
from streamer.units import CROP_SIZE, FPS, MODEL_SAMPLES_PER_UNIT


@dataclass(frozen=True)
class CostCurve:
    """A call of n ≤ batch_size frames takes `fixed_s + n × per_frame_s`; more frames take
    several calls."""

    fixed_s: float
    per_frame_s: float
    batch_size: int

    def seconds(self, frames: int) -> float:
        if frames <= 0:
            return 0.0
        calls = math.ceil(frames / self.batch_size)
        return calls * self.fixed_s + frames * self.per_frame_s

    @property
    def frames_per_s(self) -> float:
        """Throughput with full batches: what the device can render per second at most."""
        full = self.seconds(self.batch_size)
        return self.batch_size / full if full > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CostCurve:
        return cls(float(data["fixed_s"]), float(data["per_frame_s"]), int(data["batch_size"]))

    @classmethod
    def fit(cls, points: dict[int, float], batch_size: int) -> CostCurve:
        """The line through the timed calls (frames → seconds), least squares, never negative."""
        n = np.array(sorted(points), np.float64)
        t = np.array([points[k] for k in sorted(points)], np.float64)
        if len(n) < 2 or np.ptp(n) == 0:
            return cls(0.0, float(t.mean() / max(n.mean(), 1)), batch_size)
        slope, intercept = np.polyfit(n, t, 1)
        slope = max(float(slope), 0.0)
        return cls(max(float(intercept), 0.0), slope, batch_size)


LOW_WATER_CALLS = 4
"""Full-batch calls of the slowest device a live stream keeps cut ahead of playout: a window
cut now may wait for the call in progress and the next, then take its own (bench/scale.py)."""


def low_water_units(devices: Iterable[dict[str, Any]]) -> int:
    """Units a playing live stream keeps cut ahead of playout, from the workers' measured
    full-batch call time (`call_ms` of their stats rows); 0 when none is known."""
    call_ms = max((float(d.get("call_ms", 0.0)) for d in devices if d.get("alive")), default=0.0)
    return max(0, math.ceil(LOW_WATER_CALLS * call_ms / 1000 * FPS))


def probe_template() -> PreparedTemplate:
    """A plain grey face-sized frame: enough for a renderer to run at full cost."""
    frame = np.full((1, CROP_SIZE, CROP_SIZE, 3), 128, np.uint8)
    box = np.array([[0, 0, CROP_SIZE, CROP_SIZE]], np.int32)
    return PreparedTemplate(
        id="__probe__",
        name="probe",
        kind="photo",
        frames=frame,
        face_boxes=box,
        mouth=np.array([[CROP_SIZE / 2, CROP_SIZE * 0.7]], np.float32),
        blend_boxes=box,
        blend_masks=np.full((1, CROP_SIZE, CROP_SIZE), 255, np.uint8),
        renderer="",
        welcome=None,
    )


def _probe_job(frames: int) -> RenderJob:
    t = np.arange((frames + 2) * MODEL_SAMPLES_PER_UNIT, dtype=np.float32) / (MODEL_SAMPLES_PER_UNIT * FPS)
    audio = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    return RenderJob("__probe__", np.arange(frames, dtype=np.int64), audio, 0, final=True)


def measure(renderer: Renderer, batch_size: int, clock: Callable[[], float] = time.perf_counter) -> CostCurve:
    """Time calls of 1, 8 and `batch_size` frames (after one warm-up call; the faster of two
    tries each, as other work on the host only ever slows a call) and fit the curve."""
    template = probe_template()
    template = renderer.prepare(template).applied_to(template)
    sizes = sorted({1, min(8, batch_size), batch_size})
    renderer.render_batch([(template, _probe_job(1))])
    points: dict[int, float] = {}
    for size in sizes:
        job = _probe_job(size)
        for _ in range(2):
            started = clock()
            renderer.render_batch([(template, job)])
            points[size] = min(points.get(size, float("inf")), clock() - started)
    return CostCurve.fit(points, batch_size)
