"""What a render pool offers the conversation core: the contract every backend keeps
(local worker processes, Ray actors)."""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(frozen=True)
class Load:
    """Sessions open and speaking now (on one front, or on every front sharing the workers)."""

    open_sessions: int
    speaking: int

    def __add__(self, other: Load) -> Load:
        return Load(self.open_sessions + other.open_sessions, self.speaking + other.speaking)


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

    def watch_load(self, own_load: Callable[[], Load]) -> None:
        """Where this front's load is read, to be shared with other fronts on the same workers."""
        ...

    def others(self) -> Load:
        """The load of the other fronts sharing these workers, as last reported (none for a
        pool of its own)."""
        ...

    async def reserve(self, mine: Load) -> Load:
        """Count one more session of this front where the other fronts see it, and return
        their load, fresh (before admitting a session)."""
        ...

    def stats(self) -> list[dict[str, Any]]: ...

    async def close(self) -> None: ...
