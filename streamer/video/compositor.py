"""Paste a rendered 256×256 face crop into its template frame, blended with the frame's mask."""

from __future__ import annotations

import cv2
import numpy as np

from streamer.avatar.prepared import PreparedTemplate
from streamer.video.yuv import YuvTemplate


def compose(template: PreparedTemplate, position: int, crop: np.ndarray | None) -> np.ndarray:
    """The BGR frame shown at loop `position`: the template frame (the cached array itself when
    `crop` is None, so treat it as read-only), else a copy with `crop` blended into the face.

    The crop covers the face box; outside it the blended image equals the frame, so only the
    face box ∩ blend box is computed.
    """
    i = template.frame_at(position)
    frame: np.ndarray = template.frames[i]
    if crop is None:
        return frame
    fx1, fy1, fx2, fy2 = (int(v) for v in template.face_boxes[i])
    bx1, by1, bx2, by2 = (int(v) for v in template.blend_boxes[i])
    face = cv2.resize(crop, (fx2 - fx1, fy2 - fy1), interpolation=cv2.INTER_LINEAR)
    alpha = cv2.resize(template.blend_masks[i], (bx2 - bx1, by2 - by1), interpolation=cv2.INTER_LINEAR)
    # Face box ∩ blend box, in frame coordinates.
    x1, y1, x2, y2 = max(fx1, bx1), max(fy1, by1), min(fx2, bx2), min(fy2, by2)
    out = frame.copy()
    if x2 <= x1 or y2 <= y1:
        return out
    a = alpha[y1 - by1 : y2 - by1, x1 - bx1 : x2 - bx1, None].astype(np.uint16)
    new = face[y1 - fy1 : y2 - fy1, x1 - fx1 : x2 - fx1].astype(np.uint16)
    old = frame[y1:y2, x1:x2].astype(np.uint16)
    out[y1:y2, x1:x2] = ((new * a + old * (255 - a) + 127) // 255).astype(np.uint8)
    return out


def compose_i420(template: PreparedTemplate, position: int, crop: np.ndarray | None) -> np.ndarray:
    """`compose` in I420 ([H * 3 / 2, W] uint8, what the encoders take), within 2/255 of `compose`
    converted by libswscale; the template's planes are converted once per process."""
    return YuvTemplate.of(template).compose(position, crop)
