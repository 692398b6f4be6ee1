"""What preprocessing produces for one template; loaded from the cache on every start."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamer.units import FPS


@dataclass(frozen=True)
class WelcomeClip:
    """The template speaking its welcome line, rendered once at preparation."""

    positions: np.ndarray
    """[T] int64: loop position of each unit (template frame = `PreparedTemplate.frame_indices`)."""
    crops: np.ndarray
    """[T, 256, 256, 3] uint8 BGR: the rendered face crop of each unit."""
    audio: np.ndarray
    """[T * 1920] int16: 48 kHz mono audio, 1920 samples per unit."""

    @property
    def units(self) -> int:
        return int(self.positions.shape[0])

    @property
    def seconds(self) -> float:
        return self.units / FPS


@dataclass(frozen=True)
class PreparedTemplate:
    id: str
    name: str
    kind: str
    """`photo` (one frame) or `video` (a loop played forward then backward)."""
    frames: np.ndarray
    """[N, H, W, 3] uint8 BGR: the template's frames (decoded from the source, not cached)."""
    face_boxes: np.ndarray
    """[N, 4] int32 x1, y1, x2, y2: the renderer's crop of each frame (resized to 256×256)."""
    mouth: np.ndarray
    """[N, 2] float32: the mouth centre of each frame, in 256×256 crop coordinates."""
    blend_boxes: np.ndarray
    """[N, 4] int32: the region of each frame the rendered crop is blended into."""
    blend_masks: np.ndarray
    """[N, 256, 256] uint8: weight of the rendered pixels over the blend box (0–255), resized to it."""
    renderer: str
    """Name of the renderer whose data `extras` holds and which rendered the welcome clip."""
    welcome: WelcomeClip | None
    welcome_text: str = ""
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    """Renderer data per frame, e.g. MuseTalk's `latents` [N, 8, 32, 32] float16."""
    faces: str = "haar"
    """What gave the face boxes: `dwpose`, `fan` or `haar`."""
    degraded: bool = False
    """The renderer's crops are framed without landmarks (allowed only by an explicit setting)."""

    @property
    def frame_count(self) -> int:
        return int(self.frames.shape[0])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    def frame_indices(self, positions: np.ndarray) -> np.ndarray:
        """Template frame shown at each loop position: forward then backward, 0 1 … N-1 N-2 … 1 0 1 …"""
        positions = np.asarray(positions, dtype=np.int64)
        n = self.frame_count
        if n == 1:
            return np.zeros_like(positions)
        cycle = 2 * n - 2
        p = positions % cycle
        return np.where(p < n, p, cycle - p)

    def frame_at(self, position: int) -> int:
        """`frame_indices` of one position."""
        return int(self.frame_indices(np.array([position]))[0])
