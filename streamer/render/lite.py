"""The embedded renderer: no weights, CPU only, moves the template's own lower face with speech.

Per frame, an opening in 0..1 comes from the loudness of that frame's 640 samples (a noise gate
keeps the lips shut and still in silence; opening 0 returns the template crop unchanged) and
its spectrum (hiss-heavy sounds open less). The jaw then drops (the region below the mouth line
is shifted down, tapering back at the crop's bottom and sides) and a dark, soft-edged mouth
opening appears between the lips, with a hint of upper teeth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from streamer.avatar.face import crop_face
from streamer.avatar.prepared import PreparedTemplate
from streamer.render.base import Preparation, RenderJob
from streamer.units import CROP_SIZE, MODEL_RATE, MODEL_SAMPLES_PER_UNIT

VERSION = "1"
GATE_DB = -45.0
"""RMS (dBFS) at or below which the mouth is shut."""
FULL_DB = -16.0
"""RMS (dBFS) at which the mouth is fully open."""
MIN_OPENING = 0.06
"""Openings below this (after smoothing) are zero: no twitching on breath or noise."""
SMOOTH = (0.25, 0.5, 0.25)
"""Weights of the previous, this and the next frame's opening."""
MAX_DROP = 0.075 * CROP_SIZE
"""Jaw drop at full opening, in crop pixels."""
MOUTH_HALF_WIDTH = 0.14 * CROP_SIZE
JAW_HALF_WIDTH = 0.36 * CROP_SIZE
INSIDE_BGR = np.array([28, 26, 58], np.float32)
TEETH_BGR = np.array([200, 208, 218], np.float32)

_ROWS = np.arange(CROP_SIZE, dtype=np.float32)[:, None]
_COLS = np.arange(CROP_SIZE, dtype=np.float32)[None, :]
_HANN = np.hanning(MODEL_SAMPLES_PER_UNIT).astype(np.float32)
_FREQS = np.fft.rfftfreq(MODEL_SAMPLES_PER_UNIT, 1 / MODEL_RATE)


def _raw_opening(chunk: np.ndarray) -> float:
    """Opening of one frame's audio, before smoothing."""
    if chunk.size == 0:
        return 0.0
    x = np.zeros(MODEL_SAMPLES_PER_UNIT, np.float32)
    x[: chunk.size] = chunk
    rms = float(np.sqrt(np.mean(x * x)))
    level = float((20 * np.log10(rms + 1e-9) - GATE_DB) / (FULL_DB - GATE_DB))
    if level <= 0:
        return 0.0
    power = np.abs(np.fft.rfft(x * _HANN)) ** 2
    hiss = float(power[_FREQS >= 4000].sum() / (power.sum() + 1e-12))
    return min(1.0, level) * (1.0 - 0.6 * hiss)


def openings(audio: np.ndarray, first_unit: int, count: int) -> np.ndarray:
    """[count] float32 openings of units first_unit … first_unit + count - 1 of `audio`."""
    raw = np.array(
        [
            _raw_opening(audio[max(u, 0) * MODEL_SAMPLES_PER_UNIT : (u + 1) * MODEL_SAMPLES_PER_UNIT])
            if u >= 0
            else 0.0
            for u in range(first_unit - 1, first_unit + count + 1)
        ],
        np.float32,
    )
    smooth = np.convolve(raw, np.array(SMOOTH, np.float32), mode="valid")
    return np.where(smooth < MIN_OPENING, 0.0, smooth).astype(np.float32)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    out: np.ndarray = t * t * (3 - 2 * t)
    return out


def speak(crop: np.ndarray, mouth: tuple[float, float], opening: float) -> np.ndarray:
    """The crop with its jaw dropped and mouth opened by `opening` (0..1); 0 returns `crop`."""
    if opening <= 0:
        return crop
    mx, my = mouth
    drop = MAX_DROP * opening
    chin = CROP_SIZE - 0.06 * CROP_SIZE
    # Downward shift of each pixel: nothing above the lips; below them, the lower lip moves
    # across the mouth's width (a lens-shaped gap) and, further down, the whole jaw moves;
    # back to 0 at the crop's bottom edge (the neck is squeezed rather than torn).
    below = _smoothstep((_ROWS - my + 1) / 4) * (1 - _smoothstep((_ROWS - chin) / (CROP_SIZE - chin)))
    near = np.exp(-(((_ROWS - my) / (10 + drop)) ** 2))
    lips = _lens(_COLS, mx)
    jaw = np.sqrt(np.clip(1 - ((_COLS - mx) / JAW_HALF_WIDTH) ** 2, 0, 1))
    top = int(max(my - 4, 0))
    shift = drop * below[top:] * (near[top:] * lips + (1 - near[top:]) * jaw)
    map_y = (_ROWS[top:] - shift).astype(np.float32)
    map_x = np.ascontiguousarray(np.broadcast_to(_COLS, map_y.shape))
    out = crop.copy()
    out[top:] = cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    _open_mouth(out, mx, my, drop)
    return out


def _lens(xs: np.ndarray, mx: float) -> np.ndarray:
    """0..1 across the mouth: 1 at its centre, 0 at and beyond its corners."""
    return np.clip(1 - ((xs - mx) / MOUTH_HALF_WIDTH) ** 2, 0, 1) ** 0.7


def _open_mouth(img: np.ndarray, mx: float, my: float, drop: float) -> None:
    """Darken the gap the lower lip left below the mouth line, in place; a hint of upper teeth."""
    x0, x1 = int(max(mx - MOUTH_HALF_WIDTH, 0)), int(min(mx + MOUTH_HALF_WIDTH + 1, CROP_SIZE))
    y0, y1 = int(max(my - 1, 0)), int(min(my + drop + 2, CROP_SIZE))
    if x1 <= x0 or y1 <= y0:
        return
    gap = drop * _lens(_COLS[:, x0:x1] + 0.5, mx)
    depth = (_ROWS[y0:y1] + 0.5 - my) / np.maximum(gap, 1e-3)
    # Soft rims (the lips stay visible); a gap under ~3 px only darkens a little.
    alpha = _smoothstep(depth * gap / 1.5) * _smoothstep((1 - depth) * gap / 1.5 - 0.3)
    alpha *= np.clip(gap / 3, 0, 1) * 0.92
    teeth = _smoothstep((0.3 - depth) / 0.15) * np.clip((gap - 4) / 6, 0, 1) * 0.45
    inside = INSIDE_BGR * (0.7 + 0.6 * np.abs(depth - 0.5))[..., None]
    inside = inside + (TEETH_BGR - inside) * teeth[..., None]
    region = img[y0:y1, x0:x1].astype(np.float32)
    a = alpha[..., None]
    img[y0:y1, x0:x1] = (region * (1 - a) + inside * a + 0.5).astype(np.uint8)


class LiteRenderer:
    name = "lite"
    audio_context_units = 0

    def prepare(self, template: PreparedTemplate, progress: Callable[[int, int], None] | None = None) -> Preparation:
        if progress is not None:
            progress(template.frame_count, template.frame_count)
        return Preparation()

    def cache_key(self) -> dict[str, str]:
        return {"lite": VERSION}

    def render(self, template: PreparedTemplate, job: RenderJob) -> np.ndarray:
        amount = openings(job.audio, job.first_unit, job.frames)
        out = np.empty((job.frames, CROP_SIZE, CROP_SIZE, 3), np.uint8)
        for k, position in enumerate(job.positions):
            i = template.frame_at(int(position))
            crop = crop_face(template.frames[i], template.face_boxes[i])
            mouth = (float(template.mouth[i, 0]), float(template.mouth[i, 1]))
            out[k] = speak(crop, mouth, float(amount[k]))
        return out

    def render_batch(self, items: Sequence[tuple[PreparedTemplate, RenderJob]]) -> list[np.ndarray]:
        """Frame by frame anyway on the CPU: the same grouping as the model renderers."""
        return [self.render(template, job) for template, job in items]
