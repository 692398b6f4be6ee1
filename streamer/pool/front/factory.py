"""The pool `settings.pool` names: local worker processes, or actors of a Ray cluster."""

from __future__ import annotations

from streamer.config import Settings
from streamer.pool.base import RenderPool
from streamer.render import registry


def create_pool(settings: Settings, progress: bool = False) -> RenderPool:
    if settings.pool == "ray":
        from streamer.pool.front.ray_pool import RayPool

        # Without listed devices: one actor per GPU of the cluster, found when it starts.
        return RayPool(settings, registry.devices(settings) if settings.devices else None)
    from streamer.pool.front.local import LocalPool

    return LocalPool(settings, registry.devices(settings), progress=progress)
