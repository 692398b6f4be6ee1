"""The renderer contract shared by `lite`, `sim` and `musetalk`, and the job that carries one window.

Every renderer is a `Renderer`. Two parts are optional and declared here as runtime-checkable
protocols (asked with `isinstance`, never probed by name): `OwnFaces` (the renderer frames its
crops with its own face boxes) and `AudioFeatures` (its model reads audio features that
`render --save-features` can write out)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from streamer.avatar.prepared import PreparedTemplate
from streamer.units import MODEL_SAMPLES_PER_UNIT

if TYPE_CHECKING:
    from streamer.avatar.face import FaceTrack

MARGIN_UNITS = 2
"""Audio a renderer with local features looks at around its frames (lite smooths over ±1)."""


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


def job_audio(
    audio16k: np.ndarray, first_unit: int, units: int, final: bool, segment_units: int
) -> tuple[np.ndarray, int]:
    """The audio a window's job carries, and its first unit within it.

    A renderer whose features are computed per segment of `segment_units` from the utterance
    start (MuseTalk: whisper's 30 s) gets the segment before its own up to the end of the one
    holding its last unit (+ look-ahead): the same features as the whole utterance gives,
    without minutes of audio in every job. With 0 (local features) it gets its own units and
    a margin each side. A job that is not `final` gets everything known so far.
    """
    if segment_units > 0:
        chunk = segment_units * MODEL_SAMPLES_PER_UNIT
        start_unit = max(0, first_unit // segment_units - 1) * segment_units
    else:
        chunk = MODEL_SAMPLES_PER_UNIT
        start_unit = max(0, first_unit - MARGIN_UNITS)
    start = start_unit * MODEL_SAMPLES_PER_UNIT
    end = len(audio16k)
    if final:
        last = (first_unit + units + MARGIN_UNITS) * MODEL_SAMPLES_PER_UNIT
        end = min(end, -(-last // chunk) * chunk)
    return audio16k[start:end], first_unit - start_unit


@dataclass(frozen=True)
class Preparation:
    """What `Renderer.prepare` computed for a template, once, to be cached with it."""

    extras: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-frame arrays the renderer reads back when it renders (MuseTalk: `latents`)."""
    blend_masks: np.ndarray | None = None
    """[N, 256, 256] uint8 masks of the renderer's own that its crops are blended with
    (MuseTalk: face parsing); None keeps the shared geometric jaw masks."""

    def applied_to(self, template: PreparedTemplate) -> PreparedTemplate:
        masks = template.blend_masks if self.blend_masks is None else self.blend_masks
        return dataclasses.replace(template, extras=dict(self.extras), blend_masks=masks)


class Renderer(Protocol):
    name: str
    audio_context_units: int
    """Features are computed over segments of this many units from the utterance start (MuseTalk:
    whisper's 30 s); 0 when each frame needs only the audio around it. Sizes a job's audio."""

    def prepare(self, template: PreparedTemplate, progress: Callable[[int, int], None] | None = None) -> Preparation:
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


@runtime_checkable
class OwnFaces(Protocol):
    """Optional: the renderer finds face boxes itself, framed as its model was trained (MuseTalk:
    DWPose landmarks). A renderer without it gets FAN landmarks when installed, else Haar boxes."""

    def faces(self, frames: np.ndarray, name: str, progress: Callable[[int, int], None] | None = None) -> FaceTrack:
        """Face boxes (and mouth centres) of `frames` [N, H, W, 3] BGR; `name` labels errors."""
        ...


@runtime_checkable
class AudioFeatures(Protocol):
    """Optional: the renderer's model reads audio features (MuseTalk: whisper tokens)."""

    def audio_features(self, job: RenderJob) -> np.ndarray:
        """[T, ...] float32 features of the job's frames, as the model reads them."""
        ...
