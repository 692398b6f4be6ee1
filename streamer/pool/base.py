"""What a render pool offers the conversation core: the contract every backend keeps."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from streamer.render.base import RenderJob


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
        """[T, 256, 256, 3] uint8 face crops for the job, from whichever worker's turn it is."""
        ...

    async def prepare(self, template_id: str, force: bool = False) -> dict[str, str]:
        """Build or check the template's cache; returns the cache key it was built with."""
        ...

    def cancel(self, session_id: str) -> None:
        """Drop that session's queued jobs; their `render` calls raise `Cancelled`."""
        ...

    def stats(self) -> list[dict[str, Any]]: ...

    async def close(self) -> None: ...
