"""The 68 face landmarks the official MuseTalk preprocessing takes from DWPose.

As mmpose's `inference_topdown` without boxes: the whole frame is the person box, padded 1.25×
and widened to 288:384, warped to the network input (ImageNet mean/std on RGB); SimCC maxima
give each keypoint (bin / split ratio) and its score (the smaller of the x and y maxima).
Wholebody keypoints 23…90 are the 68 face points.

The official code asks an S3FD detector (weights downloaded at run time, not in the layout)
whether a face is there; here the face points' median score must reach `FACE_SCORE` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from streamer.render.musetalk.dwpose import INPUT_H, INPUT_W, SPLIT_RATIO, DWPose, load_dwpose

FACE = slice(23, 91)
PADDING = 1.25
FACE_SCORE = 0.3
"""Median SimCC score of the 68 face points below which a frame counts as faceless."""
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


@dataclass(frozen=True)
class Warp:
    """The frame → network-input mapping: input = (frame - centre) × scale + input centre."""

    cx: float
    cy: float
    scale: float

    @classmethod
    def whole_frame(cls, width: int, height: int) -> Warp:
        w, h = width * PADDING, height * PADDING
        aspect = INPUT_W / INPUT_H
        w, h = (w, w / aspect) if w > h * aspect else (h * aspect, h)
        return cls(width / 2, height / 2, INPUT_W / w)

    def matrix(self) -> np.ndarray:
        s = self.scale
        return np.array([[s, 0, INPUT_W / 2 - s * self.cx], [0, s, INPUT_H / 2 - s * self.cy]],
                        np.float32)

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        centre = np.array([INPUT_W / 2, INPUT_H / 2])
        return (points - centre) / self.scale + np.array([self.cx, self.cy])


def decode(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[K, 2] input-space points and [K] scores from one image's SimCC logits."""
    x, y = simcc_x.argmax(-1), simcc_y.argmax(-1)
    scores = np.minimum(simcc_x.max(-1), simcc_y.max(-1))
    return np.stack([x, y], axis=-1).astype(np.float64) / SPLIT_RATIO, scores


class FaceLandmarks:
    """DWPose on a device; `__call__` gives one frame's 68 face points or None."""

    def __init__(self, path: Path, device: torch.device) -> None:
        self.device = device
        self.net: DWPose = load_dwpose(path).to(device)

    @torch.inference_mode()
    def points(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[68, 2] face points in frame coordinates and their [68] scores, of a BGR frame."""
        warp = Warp.whole_frame(frame.shape[1], frame.shape[0])
        image = cv2.warpAffine(frame, warp.matrix(), (INPUT_W, INPUT_H), flags=cv2.INTER_LINEAR)
        x = (image[..., ::-1].astype(np.float32) - MEAN) / STD
        tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self.device)
        simcc_x, simcc_y = self.net(tensor)
        points, scores = decode(simcc_x[0].float().cpu().numpy(), simcc_y[0].float().cpu().numpy())
        return warp.to_frame(points[FACE]), scores[FACE]

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        points, scores = self.points(frame)
        return points if float(np.median(scores)) >= FACE_SCORE else None
