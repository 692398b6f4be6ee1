"""The 68 face landmarks the official MuseTalk preprocessing takes from DWPose.

As mmpose's `inference_topdown` without boxes: the whole frame is the person box, padded 1.25×
and widened to 288:384, warped to the network input (ImageNet mean/std on RGB); SimCC maxima
give each keypoint (bin / split ratio) and its score (the smaller of the x and y maxima). The
config tests with flipping (`flip_test=True`): the mirrored input's logits, with left and right
keypoints swapped and x reversed, are averaged with the input's (each image its own network
call, as mmpose runs them). Wholebody keypoints 23…90 are the 68 face points. The box, the warp
matrix and the points are computed in float32 as mmpose computes them (MuseTalk truncates the
points to int32, so a float64 scale moved some of them a pixel), and a point whose score is ≤ 0
is placed at bin -1, off the frame, as mmpose's decoder places it.

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


def _flip_indices() -> list[int]:
    """COCO-WholeBody's left↔right keypoint of each of the 133 (body, feet, face, hands)."""
    body = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    feet = [20, 21, 22, 17, 18, 19]
    pairs = [
        (0, 16),
        (1, 15),
        (2, 14),
        (3, 13),
        (4, 12),
        (5, 11),
        (6, 10),
        (7, 9),
        (17, 26),
        (18, 25),
        (19, 24),
        (20, 23),
        (21, 22),
        (31, 35),
        (32, 34),
        (36, 45),
        (37, 44),
        (38, 43),
        (39, 42),
        (40, 47),
        (41, 46),
        (48, 54),
        (49, 53),
        (50, 52),
        (55, 59),
        (56, 58),
        (60, 64),
        (61, 63),
        (65, 67),
    ]
    face = list(range(68))
    for a, b in pairs:
        face[a], face[b] = b, a
    hands = [i + 21 for i in range(21)] + list(range(21))
    return body + feet + [23 + i for i in face] + [91 + i for i in hands]


FLIP = _flip_indices()


@dataclass(frozen=True)
class Warp:
    """mmpose's top-down affine for one box, in float32 as mmpose keeps it: `center` and
    `scale` (the box padded 1.25× and widened to the input's 288:384, in frame pixels)."""

    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def whole_frame(cls, width: int, height: int) -> Warp:
        """`inference_topdown` without boxes: the box [0, 0, w, h] (`bbox_xyxy2cs`, then
        `TopdownAffine._fix_aspect_ratio`)."""
        box = np.array([0, 0, width, height], np.float32)
        center = (box[:2] + box[2:]) * 0.5
        w, h = np.split((box[2:] - box[:2]) * PADDING, 2)
        aspect = INPUT_W / INPUT_H
        scale = np.where(w > h * aspect, np.concatenate([w, w / aspect]), np.concatenate([h * aspect, h]))
        return cls(center, scale.astype(np.float32))

    def matrix(self) -> np.ndarray:
        """mmpose's `get_warp_matrix` (no rotation, no shift): three float32 point pairs
        (centre, centre moved half a width left, that offset turned 90°) → cv2's affine."""
        src = np.zeros((3, 2), np.float32)
        dst = np.zeros((3, 2), np.float32)
        src[0] = self.center
        src[1] = self.center + np.array([self.scale[0] * -0.5, 0.0])
        dst[0] = [INPUT_W * 0.5, INPUT_H * 0.5]
        dst[1] = np.array([INPUT_W * 0.5, INPUT_H * 0.5]) + np.array([INPUT_W * -0.5, 0.0])
        for points in (src, dst):
            direction = points[0] - points[1]
            points[2] = points[1] + np.r_[-direction[1], direction[0]]
        matrix: np.ndarray = cv2.getAffineTransform(src, dst)
        return matrix

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Input-space points to frame pixels, float32, as mmpose writes them into its results."""
        size = np.array([INPUT_W, INPUT_H])
        out: np.ndarray = (points / size * self.scale + self.center - 0.5 * self.scale).astype(np.float32)
        return out


def decode(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[K, 2] float32 input-space points and [K] scores from one image's SimCC logits, as
    mmpose's `get_simcc_maximum` + `SimCCLabel.decode`: the score is the smaller maximum, and a
    point whose score is ≤ 0 is placed at bin -1 (off the frame: the box rule then drops it)."""
    points = np.stack([simcc_x.argmax(-1), simcc_y.argmax(-1)], axis=-1).astype(np.float32)
    scores = np.minimum(simcc_x.max(-1), simcc_y.max(-1))
    points[scores <= 0.0] = -1
    points /= SPLIT_RATIO
    return points, scores


class FaceLandmarks:
    """DWPose on a device; `__call__` gives one frame's 68 face points or None."""

    def __init__(self, path: Path, device: torch.device) -> None:
        self.device = device
        self.net: DWPose = load_dwpose(path).to(device)

    @torch.inference_mode()
    def simcc(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flip-tested SimCC logits [133, 576], [133, 768] of a 384×288 BGR network input."""
        x = (image[..., ::-1].astype(np.float32) - MEAN) / STD
        tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self.device)
        simcc_x, simcc_y = self.net(tensor)  # two calls of one image each, as mmpose's flip test
        flip_x, flip_y = self.net(tensor.flip(-1))
        simcc_x = (simcc_x[0] + flip_x[0, FLIP].flip(-1)) * 0.5
        simcc_y = (simcc_y[0] + flip_y[0, FLIP]) * 0.5
        return simcc_x.float().cpu().numpy(), simcc_y.float().cpu().numpy()

    def points(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[68, 2] face points in frame coordinates and their [68] scores, of a BGR frame."""
        warp = Warp.whole_frame(frame.shape[1], frame.shape[0])
        image = cv2.warpAffine(frame, warp.matrix(), (INPUT_W, INPUT_H), flags=cv2.INTER_LINEAR)
        points, scores = decode(*self.simcc(image))
        return warp.to_frame(points[FACE]), scores[FACE]

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        points, scores = self.points(frame)
        return points if float(np.median(scores)) >= FACE_SCORE else None
