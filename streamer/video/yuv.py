"""Template frames as I420 planes, converted once per process, and crops blended into their box.

An I420 frame here is one uint8 array [H * 3 / 2, W], the layout PyAV's `yuv420p` ndarrays use:
the Y plane, then U and V (each H/2 × W/2) packed row after row. Colours are BT.601 limited
range with each chroma sample the mean of its 2×2 pixels, as libswscale converts BGR for the
encoders. Template frames are converted by libswscale itself (once), so outside the blended
box a frame is exactly what the BGR compositor's frame became after conversion.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import av
import cv2
import numpy as np

from streamer.avatar.prepared import PreparedTemplate

_BT601 = (
    np.array(
        [
            # B, G, R weights and offset, per output channel (Y, U, V), for 0–255 input.
            [24.966, 128.553, 65.481, 16 * 255],
            [112.0, -74.203, -37.797, 128 * 255],
            [-18.214, -93.786, 112.0, 128 * 255],
        ],
        dtype=np.float32,
    )
    / 255
)


def planes(i420: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of one I420 array."""
    h, w = i420.shape[0] * 2 // 3, i420.shape[1]
    chroma = i420[h:].reshape(2, h // 2, w // 2)
    return i420[:h], chroma[0], chroma[1]


def swscale_i420(bgr: np.ndarray) -> np.ndarray:
    """I420 of a BGR image by libswscale, exactly as the BGR path converted every frame."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
    return frame.reformat(format="yuv420p").to_ndarray()


def to_i420(bgr: np.ndarray) -> np.ndarray:
    """[H * 3 / 2, W] uint8 I420 of an even-sized BGR image; ~3× faster than libswscale on a
    face box and within 2/255 of it."""
    h, w = bgr.shape[:2]
    yuv = cv2.transform(bgr.astype(np.float32), _BT601)
    out = np.empty((h * 3 // 2, w), np.uint8)
    y, u, v = planes(out)
    y[:] = np.clip(yuv[:, :, 0] + 0.5, 0, 255)
    chroma = cv2.resize(yuv[:, :, 1:], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    u[:] = np.clip(chroma[:, :, 0] + 0.5, 0, 255)
    v[:] = np.clip(chroma[:, :, 1] + 0.5, 0, 255)
    return out


@dataclass(frozen=True)
class Box:
    """Where one template frame's crop lands: the face box ∩ blend box ∩ frame, widened to even
    coordinates so its chroma samples are whole, and the blend weights over it."""

    x1: int
    y1: int
    x2: int
    y2: int
    face: tuple[int, int, int, int]
    alpha: np.ndarray
    """uint16 [h, w] weight (0–255) of the rendered pixels at luma resolution, 0 outside the face."""
    alpha_half: np.ndarray
    """uint16 [h/2, w/2] the same at chroma resolution."""

    @property
    def empty(self) -> bool:
        return self.x2 <= self.x1 or self.y2 <= self.y1


def _box(template: PreparedTemplate, i: int) -> Box:
    fx1, fy1, fx2, fy2 = (int(v) for v in template.face_boxes[i])
    bx1, by1, bx2, by2 = (int(v) for v in template.blend_boxes[i])
    x1, y1 = max(fx1, bx1, 0), max(fy1, by1, 0)
    x2, y2 = min(fx2, bx2, template.width), min(fy2, by2, template.height)
    if x2 <= x1 or y2 <= y1:
        zero = np.zeros((0, 0), np.uint16)
        return Box(0, 0, 0, 0, (fx1, fy1, fx2, fy2), zero, zero)
    ex1, ey1 = x1 - x1 % 2, y1 - y1 % 2
    ex2, ey2 = min(x2 + x2 % 2, template.width), min(y2 + y2 % 2, template.height)
    mask = cv2.resize(template.blend_masks[i], (bx2 - bx1, by2 - by1), interpolation=cv2.INTER_LINEAR)
    alpha = np.zeros((ey2 - ey1, ex2 - ex1), np.float32)
    alpha[y1 - ey1 : y2 - ey1, x1 - ex1 : x2 - ex1] = mask[y1 - by1 : y2 - by1, x1 - bx1 : x2 - bx1]
    half = cv2.resize(alpha, ((ex2 - ex1) // 2, (ey2 - ey1) // 2), interpolation=cv2.INTER_AREA)
    return Box(
        ex1,
        ey1,
        ex2,
        ey2,
        (fx1, fy1, fx2, fy2),
        alpha.astype(np.uint16),
        np.clip(half + 0.5, 0, 255).astype(np.uint16),
    )


def _blend(new: np.ndarray, old: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    mixed = new.astype(np.uint16) * alpha + old.astype(np.uint16) * (255 - alpha) + 127
    out: np.ndarray = (mixed // 255).astype(np.uint8)
    return out


class YuvTemplate:
    """One template's frames in I420, each converted on first use and then shared by every
    session of the template (use `YuvTemplate.of`); the cached arrays are read-only."""

    _instances: ClassVar[dict[int, tuple[weakref.ref[Any], YuvTemplate]]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, template: PreparedTemplate) -> None:
        self.template = template
        self._frames: dict[int, np.ndarray] = {}
        self._boxes: dict[int, Box] = {}
        self._welcome: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, template: PreparedTemplate) -> YuvTemplate:
        """The process's one YuvTemplate of `template` (dropped when the template is)."""
        key = id(template)
        with cls._instances_lock:
            held = cls._instances.get(key)
            if held is not None and held[0]() is template:
                return held[1]
            made = cls(template)
            cls._instances[key] = (
                weakref.ref(template, lambda _: cls._instances.pop(key, None)),
                made,
            )
            return made

    def frame(self, i: int) -> np.ndarray:
        """Template frame `i` as read-only I420."""
        out = self._frames.get(i)
        if out is None:
            with self._lock:
                out = self._frames.get(i)
                if out is None:
                    out = swscale_i420(self.template.frames[i])
                    out.setflags(write=False)
                    self._frames[i] = out
        return out

    def box(self, i: int) -> Box:
        out = self._boxes.get(i)
        if out is None:
            out = self._boxes.setdefault(i, _box(self.template, i))
        return out

    def compose(self, position: int, crop: np.ndarray | None) -> np.ndarray:
        """The I420 frame shown at loop `position`: the cached template frame itself when `crop`
        is None (read-only), else a copy with `crop` blended into its box. Welcome-clip crops are
        blended once per process and reused."""
        i = self.template.frame_at(position)
        frame = self.frame(i)
        if crop is None:
            return frame
        box = self.box(i)
        out = frame.copy()
        if box.empty:
            return out
        patch = self._welcome_patch(i, crop)
        if patch is None:
            patch = self._patch(i, box, frame, crop)
        y, u, v = planes(out)
        py, pu, pv = planes(patch)
        y[box.y1 : box.y2, box.x1 : box.x2] = py
        u[box.y1 // 2 : box.y2 // 2, box.x1 // 2 : box.x2 // 2] = pu
        v[box.y1 // 2 : box.y2 // 2, box.x1 // 2 : box.x2 // 2] = pv
        return out

    def _patch(self, i: int, box: Box, frame: np.ndarray, crop: np.ndarray) -> np.ndarray:
        """The blended I420 planes of `box` alone, packed as an I420 array of the box's size."""
        fx1, fy1, fx2, fy2 = box.face
        bgr = self.template.frames[i][box.y1 : box.y2, box.x1 : box.x2].copy()
        face = cv2.resize(crop, (fx2 - fx1, fy2 - fy1), interpolation=cv2.INTER_LINEAR)
        x1, y1 = max(fx1, box.x1), max(fy1, box.y1)
        x2, y2 = min(fx2, box.x2), min(fy2, box.y2)
        bgr[y1 - box.y1 : y2 - box.y1, x1 - box.x1 : x2 - box.x1] = face[y1 - fy1 : y2 - fy1, x1 - fx1 : x2 - fx1]
        new = planes(to_i420(bgr))
        fy, fu, fv = planes(frame)
        cy, cx = slice(box.y1 // 2, box.y2 // 2), slice(box.x1 // 2, box.x2 // 2)
        out = np.empty(((box.y2 - box.y1) * 3 // 2, box.x2 - box.x1), np.uint8)
        oy, ou, ov = planes(out)
        oy[:] = _blend(new[0], fy[box.y1 : box.y2, box.x1 : box.x2], box.alpha)
        ou[:] = _blend(new[1], fu[cy, cx], box.alpha_half)
        ov[:] = _blend(new[2], fv[cy, cx], box.alpha_half)
        return out

    def _welcome_patch(self, i: int, crop: np.ndarray) -> np.ndarray | None:
        """The cached patch of a welcome-clip crop (blended on first use), or None for others."""
        clip = self.template.welcome
        if clip is None or not np.shares_memory(crop, clip.crops):
            return None
        k, rest = divmod(
            crop.__array_interface__["data"][0] - clip.crops.__array_interface__["data"][0],
            crop.nbytes,
        )
        if rest or crop.shape != clip.crops.shape[1:] or not 0 <= k < clip.units:
            return None
        key = k * self.template.frame_count + i
        patch = self._welcome.get(key)
        if patch is None:
            patch = self._patch(i, self.box(i), self.frame(i), clip.crops[k])
            patch.setflags(write=False)
            self._welcome[key] = patch
        return patch
