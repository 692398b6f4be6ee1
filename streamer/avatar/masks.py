"""Where and how strongly a rendered face crop replaces the template frame.

As in MuseTalk: the crop is blended over a square 1.5× the face box, with weight only on the
lower face (below `upper_boundary_ratio` of the square) and soft, gaussian-blurred edges. The
square is not clipped to the frame: near an edge it reaches outside (the official code crops it
with PIL, which pads), so the face stays centred in it and the boundary stays at its middle.
MuseTalk shapes the lower face with a face-parsing net; without one, a jaw-shaped half ellipse.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamer.units import CROP_SIZE

EXPAND = 1.5
UPPER_BOUNDARY_RATIO = 0.5
BLUR_RATIO = 0.1
"""Gaussian kernel of the mask's edges, as a fraction of its width."""


def blend_boxes(face_boxes: np.ndarray, expand: float = EXPAND) -> np.ndarray:
    """[N, 4] int32 squares around each face box, as the official `get_crop_box`: centre
    (x1 + x2) // 2, half side int(max(w, h) // 2 × expand); not clipped to the frame."""
    boxes = face_boxes.astype(np.int64)
    centre = (boxes[:, :2] + boxes[:, 2:]) // 2
    half = ((boxes[:, 2:] - boxes[:, :2]).max(axis=1, keepdims=True) // 2 * expand).astype(np.int64)
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.int32)


def padded_crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """`frame[y1:y2, x1:x2]` with black where the box reaches outside the frame (PIL's crop)."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in box)
    out = np.zeros((y2 - y1, x2 - x1, *frame.shape[2:]), frame.dtype)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if sx2 > sx1 and sy2 > sy1:
        out[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = frame[sy1:sy2, sx1:sx2]
    return out


def jaw_mask(
    face_box: np.ndarray, blend_box: np.ndarray, upper_boundary_ratio: float = UPPER_BOUNDARY_RATIO
) -> np.ndarray:
    """[256, 256] uint8 weight of the rendered crop over `blend_box`, in that box's coordinates."""
    bx1, by1, bx2, by2 = (float(v) for v in blend_box)
    sx, sy = CROP_SIZE / (bx2 - bx1), CROP_SIZE / (by2 - by1)
    x1, x2 = (face_box[0] - bx1) * sx, (face_box[2] - bx1) * sx
    y1, y2 = (face_box[1] - by1) * sy, (face_box[3] - by1) * sy
    top = y1 + upper_boundary_ratio * (y2 - y1)
    ys, xs = np.mgrid[0:CROP_SIZE, 0:CROP_SIZE].astype(np.float32) + 0.5
    cx, rx, ry = (x1 + x2) / 2, (x2 - x1) / 2, y2 - top
    # A half ellipse hanging from the upper boundary, squared off a little (exponent 3) so the
    # cheeks beside the mouth are included, as a face-parsing jaw region would be.
    inside = (np.abs((xs - cx) / rx) ** 3 + np.abs((ys - top) / ry) ** 3 <= 1.0) & (ys >= top)
    inside &= (xs >= x1) & (xs < x2) & (ys < y2)
    mask = inside.astype(np.float32) * 255
    k = int(BLUR_RATIO * CROP_SIZE) // 2 * 2 + 1
    # Blurring would let weight leak past the box edge onto the upper face; erode first so the
    # blurred edge stays inside the face box's lower half.
    mask = cv2.erode(mask, np.ones((k, k), np.uint8))
    out: np.ndarray = np.clip(cv2.GaussianBlur(mask, (k, k), 0) + 0.5, 0, 255).astype(np.uint8)
    return out


def jaw_masks(face_boxes: np.ndarray, blend: np.ndarray) -> np.ndarray:
    """[N, 256, 256] uint8 masks, one per frame."""
    return np.stack([jaw_mask(f, b) for f, b in zip(face_boxes, blend, strict=True)])
