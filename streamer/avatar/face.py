"""Face boxes per template frame, on MuseTalk v1.5's rule, smoothed over time.

MuseTalk's box (`get_landmark_and_bbox`) spans the 68 landmarks' width and, vertically, from
the chin mirrored about the nose (point 29) up to the chin, with `extra_margin` px added below.
The landmarks come from a `Landmarker` (DWPose or face-alignment's FAN, given by the renderer);
without one an OpenCV Haar box (which stops above the chin) is mapped to the same shape by
fixed ratios: good enough for `lite`, a degraded crop for MuseTalk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamer.errors import BadInput
from streamer.units import CROP_SIZE

log = logging.getLogger(__name__)

EXTRA_MARGIN = 10
SMOOTH_FRAMES = 7
"""Window of the centred moving average over the boxes of a video (odd)."""
FAN_FILE = "2DFAN4-11f355bf06.pth.tar"
SFD_FILE = "s3fd-619a316812.pth"
# Haar frontal-face boxes (x, y, w, h) run from mid-forehead to just under the mouth. In units
# of the Haar box: where the nose tip and the chin lie, and the jaw's width.
HAAR_NOSE_Y = 0.60
HAAR_CHIN_Y = 1.18
HAAR_JAW_INSET = 0.04
HAAR_SIDE = 320
"""Frames are searched at most this large (faster; a face box needs no more)."""
MOUTH_IN_CROP = (0.5, 0.63)
"""Mouth centre in the crop (fractions of 256) when there are no landmarks; checked on the astronaut."""

Progress = Callable[[int, int], None]
Landmarker = Callable[[np.ndarray], "np.ndarray | None"]
"""68 face points [68, 2] (x, y, frame pixels) of a BGR frame, or None when it shows no face."""


@dataclass(frozen=True)
class FaceTrack:
    boxes: np.ndarray
    """[N, 4] int32 x1, y1, x2, y2 (exclusive), inside the frame."""
    mouth: np.ndarray
    """[N, 2] float32 mouth centre (x, y) in 256×256 crop coordinates."""
    source: str
    """What gave the boxes: `dwpose`, `fan` (68 landmarks) or `haar` (fixed ratios)."""
    degraded: bool = False
    """The renderer was explicitly allowed to go without a part it wants (landmarks: Haar boxes;
    MuseTalk's face parsing: a geometric blend mask)."""
    reasons: tuple[str, ...] = ()
    """What is missing when `degraded`, for the warning at preparation."""


def _haar() -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")  # type: ignore[attr-defined]  # cv2.data is not in its stubs
    if cascade.empty():
        raise RuntimeError("OpenCV's Haar face cascade is missing from cv2.data")
    return cascade


def _haar_face(cascade: cv2.CascadeClassifier, frame: np.ndarray) -> np.ndarray | None:
    """Box [x1, y1, x2, y2] float (MuseTalk-shaped, before margin) of the surest face, or None.

    The cascade's confidence picks the face, not the size: on the astronaut a patch of the suit
    is sometimes a larger (weak) detection.
    """
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    scale = min(1.0, HAAR_SIDE / max(gray.shape))
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    faces, _, weights = cascade.detectMultiScale3(
        gray, 1.1, 5, minSize=(max(24, min(gray.shape) // 12),) * 2, outputRejectLevels=True
    )
    if len(faces) == 0:
        return None
    x, y, w, h = (float(v) / scale for v in faces[int(np.argmax(np.ravel(weights)))])
    nose, chin = y + HAAR_NOSE_Y * h, y + HAAR_CHIN_Y * h
    return np.array([x + HAAR_JAW_INSET * w, 2 * nose - chin, x + (1 - HAAR_JAW_INSET) * w, chin])


def _drop_outliers(boxes: list[np.ndarray | None]) -> list[np.ndarray | None]:
    """Forget boxes whose centre is far from the median centre (a detection of something else)."""
    known = np.array([b for b in boxes if b is not None])
    if len(known) < 3:
        return boxes
    centre = np.median((known[:, :2] + known[:, 2:]) / 2, axis=0)
    size = np.median(known[:, 2] - known[:, 0])
    return [b if b is not None and np.hypot(*((b[:2] + b[2:]) / 2 - centre)) < 0.35 * size else None for b in boxes]


def landmark_box(points: np.ndarray) -> np.ndarray | None:
    """The official v1.5 box (bbox_shift 0, before `extra_margin`) from 68 face points, or None
    where the official code would fall back to its detector's box (empty box, or x1 < 0).

    As there, the points are truncated to int32 first and the top is int(nose - (chin - nose)).
    """
    p = np.asarray(points).astype(np.int32)
    nose, chin = int(p[29, 1]), int(p[:, 1].max())
    x1, y1, x2, y2 = int(p[:, 0].min()), int(nose - (chin - nose)), int(p[:, 0].max()), chin
    if y2 - y1 <= 0 or x2 - x1 <= 0 or x1 < 0:
        return None
    return np.array([x1, y1, x2, y2], np.float64)


def has_fan(models: Path | None) -> bool:
    root = Path(models) / "face-alignment" if models is not None else None
    return root is not None and (root / "checkpoints" / FAN_FILE).is_file() and (root / SFD_FILE).is_file()


def fan_landmarker(models: Path) -> Landmarker:
    """face-alignment's FAN (needs its weights under `models/face-alignment/`; see `has_fan`)."""
    import face_alignment
    import torch

    root = Path(models) / "face-alignment"
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(root))  # FAN weights are looked up as <hub>/checkpoints/<file>
    try:
        fan = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D,
            device="cpu",
            compile=False,
            face_detector="sfd",
            face_detector_kwargs={"path_to_detector": str(root / SFD_FILE)},
        )
    finally:
        torch.hub.set_dir(previous)

    def points(frame: np.ndarray) -> np.ndarray | None:
        found = fan.get_landmarks_from_image(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        if not found:
            return None
        best: np.ndarray = max(found, key=lambda p: np.ptp(p[:, 0]) * np.ptp(p[:, 1]))[:, :2]
        return best

    return points


def _smooth(boxes: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average; edges reflect, as the loop plays forward then backward."""
    if len(boxes) < 3:
        return boxes
    half = min(window // 2, len(boxes) - 1)
    padded = np.concatenate([boxes[half:0:-1], boxes, boxes[-2 : -2 - half : -1]])
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(4)], axis=1)


def _fill_missing(values: list[np.ndarray | None], name: str) -> np.ndarray:
    """Frames without a face take the nearest frame's value."""
    known = [i for i, v in enumerate(values) if v is not None]
    if not known:
        raise BadInput(f"no face found in template {name}")
    idx = np.array(known)
    out = []
    for i in range(len(values)):
        nearest = idx[np.abs(idx - i).argmin()]
        out.append(values[nearest])
    return np.stack(out).astype(np.float64)


def _find(
    frames: np.ndarray, landmarker: Landmarker | None, progress: Progress | None
) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
    """Raw box (before margin) and mouth centre of each frame; None where there is no face."""
    cascade = _haar() if landmarker is None else None
    raw: list[np.ndarray | None] = []
    mouths: list[np.ndarray | None] = []
    for i, frame in enumerate(frames):
        box = mouth = None
        if landmarker is not None:
            points = landmarker(frame)
            if points is not None:
                box, mouth = landmark_box(points), np.asarray(points)[48:68].mean(axis=0)
        elif cascade is not None:
            box = _haar_face(cascade, frame)
        raw.append(box)
        mouths.append(mouth)
        if progress is not None:
            progress(i + 1, len(frames))
    return raw, mouths


def detect_faces(
    frames: np.ndarray,
    name: str,
    landmarker: Landmarker | None = None,
    progress: Progress | None = None,
    source: str = "haar",
    degraded: bool = False,
) -> FaceTrack:
    """Face box and mouth centre of every frame of `frames` [N, H, W, 3] BGR.

    `landmarker` None: Haar boxes; `source` names what the landmarker is (for the labels).
    """
    n, height, width = frames.shape[:3]
    raw, mouths = _find(frames, landmarker, progress)
    kept = _drop_outliers(raw)
    missing = sum(b is None for b in kept)
    if missing and missing < n:
        log.info("no face in %d of %d frames of %s; they take their neighbours' box", missing, n, name)
    boxes = _smooth(_fill_missing(kept, name), SMOOTH_FRAMES)
    boxes[:, 3] += EXTRA_MARGIN
    boxes = np.round(boxes)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    boxes = boxes.astype(np.int32)
    if np.any(boxes[:, 2] - boxes[:, 0] < 8) or np.any(boxes[:, 3] - boxes[:, 1] < 8):
        raise BadInput(f"the face in template {name} is too small or outside the frame")
    size = (boxes[:, 2:] - boxes[:, :2]).astype(np.float32)
    if landmarker is not None:
        frame_mouth = _fill_missing([m if b is not None else None for m, b in zip(mouths, kept, strict=True)], name)
        mouth_crop = (frame_mouth - boxes[:, :2]) / size * CROP_SIZE
    else:
        mouth_crop = np.tile(np.array(MOUTH_IN_CROP) * CROP_SIZE, (n, 1))
    reasons = ("face boxes without landmarks",) if degraded else ()
    return FaceTrack(boxes, mouth_crop.astype(np.float32), source if landmarker else "haar", degraded, reasons)


def crop_face(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The face box of `frame` (clipped to it) resized to 256×256 with Lanczos, as MuseTalk does."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in box)
    x1, x2, y1, y2 = max(0, x1), min(w, x2), max(0, y1), min(h, y2)
    if x2 <= x1 or y2 <= y1:
        raise BadInput(f"face box {tuple(int(v) for v in box)} lies outside the {w}×{h} frame")
    return cv2.resize(frame[y1:y2, x1:x2], (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LANCZOS4)
