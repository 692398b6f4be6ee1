"""What a render pool offers the conversation core: the contract every backend keeps
(local worker processes, Ray actors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from streamer.render.base import RenderJob


@dataclass(frozen=True)
class Capacity:
    """What the running workers can render, from the cost curves they measured at start."""

    frames_per_s: float
    """All running workers together, in full batches."""
    devices: int
    """Running workers."""
    per_device: tuple[float, ...]
    """Frames per second of each worker (0 for one that is not running)."""


class RenderPool(Protocol):
    @property
    def renderer(self) -> str:
        """Name of the renderer the workers run ("" until one is running)."""
        ...

    @property
    def audio_context_units(self) -> int:
        """The renderer's `audio_context_units` (how much audio a job carries)."""
        ...

    async def start(self) -> None: ...

    async def render(self, job: RenderJob) -> np.ndarray:
        """[T, 256, 256, 3] uint8 face crops for the job, from the worker predicted to finish
        it first; raises `Cancelled` if its session cancels it first."""
        ...

    def cancel(self, session_id: str) -> None:
        """Drop that session's queued jobs everywhere at once; their `render` raise `Cancelled`."""
        ...

    async def prepare(self, template_id: str, force: bool = False) -> dict[str, str]:
        """Build or check the template's cache, and load it on every worker; returns its key."""
        ...

    def capacity(self) -> Capacity: ...

    def stats(self) -> list[dict[str, Any]]: ...

    async def close(self) -> None: ...
