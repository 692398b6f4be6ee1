"""MuseTalk's face boxes: from DWPose landmarks of the official layout, as the official
preprocessing takes them; face-alignment's FAN when chosen and installed; OpenCV Haar boxes
only when `musetalk_faces = "haar"` says so, and then the template is labelled degraded. It is
labelled so too when `musetalk_mask = "geometric"` blends without face parsing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from streamer.avatar.face import FAN_FILE, FaceTrack, Landmarker, detect_faces, fan_landmarker, has_fan
from streamer.avatar.hashing import file_sha256
from streamer.errors import ModelError
from streamer.render.musetalk.layout import DWPOSE_FILE, Layout
from streamer.settings_slices import RenderSettings

FACES_VERSION = "2"
"""Bump when MuseTalk's boxes are computed differently."""


def face_mode(layout: Layout, settings: RenderSettings) -> str:
    """`dwpose`, `fan` or `haar`; ModelError naming the missing file when landmarks are wanted
    and not installed."""
    mode = settings.musetalk_faces
    if mode == "haar":
        return mode
    if mode in ("auto", "dwpose") and layout.dwpose is not None:
        return "dwpose"
    if mode in ("auto", "fan") and has_fan(layout.root):
        return "fan"
    wanted = {
        "dwpose": str(layout.root / "dwpose" / DWPOSE_FILE),
        "fan": str(layout.root / "face-alignment" / "checkpoints" / FAN_FILE),
    }
    missing = wanted[mode] if mode in wanted else wanted["dwpose"]
    raise ModelError(
        f"MuseTalk needs face landmarks to frame its crops: {missing} is missing. Install it, or "
        'set musetalk_faces = "haar" to prepare with OpenCV boxes (labelled degraded)'
    )


def faces_key(layout: Layout, settings: RenderSettings, store: Path | None) -> dict[str, str]:
    mode = face_mode(layout, settings)
    key = {"faces": f"{FACES_VERSION}+{mode}", "mask": settings.musetalk_mask}
    if mode == "dwpose":
        key["dwpose"] = file_sha256(layout.dwpose, store)  # type: ignore[arg-type]
    return key


def face_track(
    layout: Layout,
    settings: RenderSettings,
    device: torch.device,
    frames: np.ndarray,
    name: str,
    progress: Callable[[int, int], None] | None = None,
) -> FaceTrack:
    mode = face_mode(layout, settings)
    track = _track(layout, mode, device, frames, name, progress)
    if settings.musetalk_mask == "geometric":
        reasons = (*track.reasons, "geometric blend mask, no face parsing")
        track = dataclasses.replace(track, degraded=True, reasons=reasons)
    return track


def _track(
    layout: Layout,
    mode: str,
    device: torch.device,
    frames: np.ndarray,
    name: str,
    progress: Callable[[int, int], None] | None,
) -> FaceTrack:
    if mode == "haar":
        return detect_faces(frames, name, None, progress, degraded=True)
    landmarker: Landmarker
    if mode == "dwpose":
        from streamer.render.musetalk.landmarks import FaceLandmarks

        landmarker = FaceLandmarks(layout.dwpose, device)  # type: ignore[arg-type]
    else:
        landmarker = fan_landmarker(layout.root)
    return detect_faces(frames, name, landmarker, progress, source=mode)
