"""Fronts for bench/scale.py: N Ray pools (one per signalling server) on the same named
render actors of a local Ray instance, with sim devices. The fronts share this process's
event loop (the bench's own CPU stays one process's); each has its own id, leases and jobs,
so the actors see N fronts, batch their jobs together and order them by deadline."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from streamer.config import Settings
from streamer.pool.front.ray_pool import RayPool


@contextlib.asynccontextmanager
async def ray_fronts(settings: Settings, devices: list[str], count: int) -> AsyncIterator[list[RayPool]]:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace=settings.ray_namespace)
    pools = [RayPool(settings, devices) for _ in range(count)]
    try:
        for pool in pools:  # the first creates the actors, the others find them by name
            await pool.start()
        yield pools
    finally:
        for pool in pools:
            await pool.close()
        ray.shutdown()
