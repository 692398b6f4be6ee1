"""The Ray render pool: a render actor per GPU of a Ray cluster (or per listed cpu/sim device).

Same scheduling as the local pool: the queue is in each actor, placement by predicted finish
here. Ray restarts a dead actor (`max_restarts=-1`); its jobs fail over to another actor once
and, when it answers again, it loads the templates prepared so far. Every node reads the same
`templates_dir`, `cache_dir` and `models` paths: a shared file system, or copies; a node whose
cache does not match its own sources and weights rebuilds it (the cache key decides).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from streamer.config import Settings, settings_to_json, without_secrets
from streamer.errors import NotReady, WorkerDied
from streamer.pool.dispatch import Dispatcher
from streamer.pool.handle import Handle
from streamer.pool.wire import decode, encode

log = logging.getLogger(__name__)

START_TIMEOUT_S = 600.0


def _ray() -> Any:  # the ray module, imported on first use (it is optional)
    try:
        import ray
    except ImportError:
        raise NotReady("pool = \"ray\" needs the ray package: pip install 'streamer[ray]'") from None
    return ray


class ActorWorker(Handle):
    def __init__(self, index: int, device: str, settings: Settings, on_back: Any) -> None:
        super().__init__(index, device, settings.render_timeout_s)
        self._settings = settings
        self._on_back = on_back
        self.actor: Any = None
        self.pid: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        ray = _ray()
        from streamer.pool.ray_actor import RenderActor

        gpu = self.stats.device.startswith("cuda")
        options = (
            {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 0 if self.stats.device.startswith("sim") else 1}
        )
        cls = ray.remote(max_restarts=-1, max_task_retries=0, **options)(RenderActor)
        device = "cuda:0" if gpu else self.stats.device  # Ray shows each actor its one GPU
        self.actor = cls.remote(self.stats.index, device, settings_to_json(without_secrets(self._settings)))
        await self._hello(START_TIMEOUT_S)

    async def _hello(self, timeout: float) -> None:
        ray = _ray()
        try:
            ready = await asyncio.wait_for(asyncio.wrap_future(self.actor.hello.remote().future()), timeout)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            raise NotReady(f"render actor {self.stats.index} on {self.stats.device} failed: {exc}") from None
        self.pid = ready["pid"]
        self.ready(ready)
        log.info(
            "render actor %d on %s ready (pid %d, %.0f frames/s)",
            self.stats.index,
            self.stats.device,
            self.pid,
            self.stats.frames_per_s,
        )

    async def _send(self, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None) -> None:
        ref = self.actor.call.remote(encode(meta, arrays))
        if meta.get("op") == "render":  # no "started" from an actor: queueing is predicted instead
            self._started([meta["id"]], extra_s=self.predict(0, float("inf")))
        task = asyncio.get_running_loop().create_task(self._answer(ref, meta["id"]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, ref: Any, job_id: int) -> None:
        ray = _ray()
        try:
            data = await asyncio.wrap_future(ref.future())
        except ray.exceptions.RayActorError:
            self._lost()
            return
        except ray.exceptions.RayError as exc:
            self._finish(job_id, WorkerDied(f"render actor {self.stats.index}: {exc}"))
            return
        self._done(*decode(data))

    def _lost(self) -> None:
        """The actor died: fail what it held (retried elsewhere) and wait for Ray's restart."""
        if not self.stats.alive:
            return
        self.stats.alive = False
        log.error("render actor %d on %s died; Ray restarts it", self.stats.index, self.stats.device)
        self._died()
        task = asyncio.get_running_loop().create_task(self._back())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _back(self) -> None:
        while True:
            try:
                await self._hello(START_TIMEOUT_S)
                break
            except NotReady as exc:
                log.error("render actor %d not back yet: %s", self.stats.index, exc)
                await asyncio.sleep(1.0)
        self.stats.restarts += 1
        await self.announce_restart()
        await self._on_back(self)

    def _send_cancel(self, session_id: str) -> None:
        self.actor.cancel.remote(session_id)

    def _hung(self) -> None:
        _ray().kill(self.actor, no_restart=False)

    async def stop(self) -> None:
        self.stats.alive = False
        for task in list(self._tasks):
            task.cancel()
        self._died()
        if self.actor is not None:
            _ray().kill(self.actor, no_restart=True)
            self.actor = None


class RayPool(Dispatcher):
    """Render actors on a Ray cluster, one per GPU, or one per device listed in `devices`."""

    workers: Sequence[ActorWorker]

    def __init__(self, settings: Settings, devices: list[str] | None = None) -> None:
        self._settings = settings
        self._devices = devices
        super().__init__([])

    async def start(self) -> None:
        ray = _ray()
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the cluster
            ray.init(address=self._settings.ray_address, include_dashboard=False)
        devices = self._devices or [f"cuda:{i}" for i in range(int(ray.cluster_resources().get("GPU", 0)))]
        if not devices:
            raise NotReady("the Ray cluster has no GPU: list cpu or sim devices in `devices`")
        self.workers = [ActorWorker(i, d, self._settings, self.reload) for i, d in enumerate(devices)]
        await asyncio.gather(*(w.start() for w in self.workers))

    async def close(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
