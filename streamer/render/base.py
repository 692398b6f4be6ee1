"""The renderer contract shared by `lite` and `musetalk`, and the job that carries one window."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from streamer.avatar.prepared import PreparedTemplate


@dataclass(frozen=True)
class RenderJob:
    """One window of one utterance: render `len(positions)` frames.

    `audio` is the utterance's 16 kHz mono float32 audio from its start (or from a 30 s-aligned
    point of it, for long utterances) up to the newest sample known, so a renderer can compute
    audio features with the same context the whole file would give. Output frame i plays
    during samples [(first_unit + i) * 640, (first_unit + i + 1) * 640) of `audio`.
    """

    template_id: str
    positions: np.ndarray
    """[T] int64 loop positions; the template frame of each is `template.frame_at(position)`."""
    audio: np.ndarray
    """float32 16 kHz mono, see above."""
    first_unit: int
    """Index (25 fps units) within `audio` of the first frame to render."""
    final: bool
    """True when `audio` ends where the utterance ends (an upload, or a stream that has ended)."""
    session_id: str = ""
    """The session it renders for: an interrupt cancels that session's queued jobs."""
    due_in_s: float = math.inf
    """Seconds from now until its first frame plays; each process rebases it on its own clock."""

    @property
    def frames(self) -> int:
        return int(self.positions.shape[0])


class Renderer(Protocol):
    name: str

    def prepare(
        self, template: PreparedTemplate, progress: Callable[[int, int], None] | None = None
    ) -> dict[str, np.ndarray]:
        """Per-frame data this renderer needs, computed once and cached with the template."""
        ...

    def cache_key(self) -> dict[str, str]:
        """What shaped `prepare`'s output (model file hashes, settings); part of the cache key."""
        ...

    def render(self, template: PreparedTemplate, job: RenderJob) -> np.ndarray:
        """[T, 256, 256, 3] uint8 BGR face crops for exactly `job.positions`."""
        ...

    def render_batch(self, items: Sequence[tuple[PreparedTemplate, RenderJob]]) -> list[np.ndarray]:
        """`render` of each job, in as few model calls as `batch_size` allows (any templates)."""
        ...
