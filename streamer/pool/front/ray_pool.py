"""The Ray render pool: one named render actor per device of a Ray cluster, shared by every
front (signalling server) that joins it.

Each device's actor has a stable name in `ray_namespace`; a front gets it if it exists and
creates it otherwise (Ray's `get_if_exists`, so two fronts starting together make one). The
actors are detached: they outlive any front, Ray restarts a dead one (`max_restarts=-1`), and
`python run.py actors --stop` removes them. Every front's jobs go into the same EDF queue on
the actor and are batched together; the actor says when each starts and answers the front
that sent it. Each front renews a lease on every actor with its load (open and speaking
sessions); admission adds the other fronts' loads to its own, so the fronts together never
admit more than the devices carry. Every node reads the same `templates_dir`, `cache_dir` and
`models` paths: a shared file system, or copies (the cache key decides what is reused).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from streamer.config import Settings, render_slice, settings_to_json
from streamer.errors import NotReady, WorkerDied
from streamer.memory import ARENAS
from streamer.pool.front.admission import Load
from streamer.pool.front.dispatch import Dispatcher
from streamer.pool.front.handle import Handle
from streamer.pool.front.ray_cluster import actor_name, connect, ray_module
from streamer.pool.wire import decode, encode
from streamer.pool.worker.ray_actor import LEASE_S

log = logging.getLogger(__name__)

START_TIMEOUT_S = 600.0
LEASE_WAIT_S = 3 * LEASE_S


def actor_settings(settings: Settings) -> dict[str, Any]:
    """The settings every render actor is given: the one place they leave this process (the
    render slice alone: no secret, nothing of the other layers)."""
    return settings_to_json(render_slice(settings))


def actor_env() -> dict[str, str]:
    """The actor processes' environment: glibc tuned as the local workers are (two heaps);
    an operator's own `GLIBC_TUNABLES` wins."""
    return {"GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", f"glibc.malloc.arena_max={ARENAS}")}


class ActorWorker(Handle):
    def __init__(
        self,
        index: int,
        device: str,
        settings: Settings,
        front: str,
        on_back: Callable[[Handle], Awaitable[None]],
    ) -> None:
        """`on_back(worker)` is awaited once a restarted actor answers again (the pool reloads it)."""
        super().__init__(index, device, settings.render_timeout_s)
        self._settings = settings
        self.front = front
        self._on_back = on_back
        self.actor: Any = None
        self.pid: int | None = None
        self.report: dict[str, Any] = {}
        """The actor's newest report: fronts and their loads, jobs by front, predicted finish."""
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        from streamer.pool.worker.ray_actor import RenderActor

        ray = ray_module()
        device = self.stats.device
        gpu = device.startswith("cuda")
        resources = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 0 if device.startswith("sim") else 1}
        cls = ray.remote(RenderActor).options(
            name=actor_name(device),
            namespace=self._settings.ray_namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_task_retries=0,
            runtime_env={"env_vars": actor_env()},
            **resources,
        )
        actor_device = "cuda:0" if gpu else device  # Ray shows each actor its one GPU
        self.actor = cls.remote(self.stats.index, actor_device, actor_settings(self._settings))
        await self._hello(START_TIMEOUT_S)

    async def _hello(self, timeout: float) -> None:
        ray = ray_module()
        try:
            ready = await asyncio.wait_for(asyncio.wrap_future(self.actor.hello.remote().future()), timeout)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            raise NotReady(f"render actor {self.stats.index} on {self.stats.device} failed: {exc}") from None
        self.pid = ready["pid"]
        self.ready(ready)
        log.info("render actor %s ready (pid %d, %.0f frames/s)", actor_name(self.stats.device), self.pid,
                 self.stats.frames_per_s)  # fmt: skip

    def predict(self, frames: int, deadline: float) -> float:
        """As a local worker, plus the frames other fronts have queued on this actor."""
        jobs = self.report.get("frames_by_front", {})
        others = sum(n for front, n in jobs.items() if front != self.front)
        own = super().predict(frames, deadline)
        return own + (self.curve.seconds(others + frames) - self.curve.seconds(frames) if self.curve else 0.0)

    async def lease(self, load: Load) -> dict[str, Any]:
        """Renew this front's lease with its load; keeps and returns the actor's report."""
        body = {"open": load.open_sessions, "speaking": load.speaking}
        self.report = await asyncio.wrap_future(self.actor.lease.remote(self.front, body).future())
        return self.report

    async def _send(self, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None) -> None:
        calls = self.actor.call.options(num_returns="streaming").remote(self.front, encode(meta, arrays))
        task = asyncio.get_running_loop().create_task(self._answer(calls, meta["id"]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, calls: Any, job_id: int) -> None:
        ray = ray_module()
        try:
            async for ref in calls:
                meta, arrays = decode(await ref)
                if meta.get("type") == "started":
                    self._started(meta["ids"])
                else:
                    self._done(meta, arrays)
        except ray.exceptions.RayActorError:
            self._lost()
        except ray.exceptions.RayError as exc:
            self._finish(job_id, WorkerDied(f"render actor {self.stats.index}: {exc}"))

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
        ray_module().kill(self.actor, no_restart=False)

    async def stop(self) -> None:
        """Leave the actor (its jobs from this front are dropped there); it serves the others."""
        self.stats.alive = False
        for task in list(self._tasks):
            task.cancel()
        self._died()
        if self.actor is not None:
            self.actor.leave.remote(self.front)
            self.actor = None


class RayPool(Dispatcher):
    """Render actors on a Ray cluster, one per GPU, or one per device listed in `devices`."""

    workers: Sequence[ActorWorker]

    def __init__(self, settings: Settings, devices: list[str] | None = None) -> None:
        self._settings = settings
        self._devices = devices
        self.front = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        """This front's id on the actors (its leases, its jobs)."""
        self._own_load: Callable[[], Load] = self._load_from_jobs
        self._leases: asyncio.Task[None] | None = None
        super().__init__([])

    async def start(self) -> None:
        ray = await asyncio.get_running_loop().run_in_executor(None, connect, self._settings)
        devices = self._devices or [f"cuda:{i}" for i in range(int(ray.cluster_resources().get("GPU", 0)))]
        if not devices:
            raise NotReady("the Ray cluster has no GPU: list cpu or sim devices in `devices`")
        self.workers = [ActorWorker(i, d, self._settings, self.front, self.reload) for i, d in enumerate(devices)]
        await asyncio.gather(*(w.start() for w in self.workers))
        self._leases = asyncio.get_running_loop().create_task(self._renew())
        log.info("front %s uses %d shared render actors", self.front, len(self.workers))

    def watch_load(self, own_load: Callable[[], Load]) -> None:
        self._own_load = own_load

    def _load_from_jobs(self) -> Load:
        """Without a session registry (benches): sessions with jobs in flight, all speaking."""
        sessions = {p.session_id for w in self.workers for p in w._pending.values() if p.session_id}
        return Load(len(sessions), len(sessions))

    async def _renew(self) -> None:
        while True:
            await asyncio.gather(*(self._lease(w, self._own_load()) for w in self.workers if w.alive))
            await asyncio.sleep(LEASE_S)

    async def _lease(self, worker: ActorWorker, load: Load) -> None:
        """One lease; an actor being restarted holds its call, never the leases on the others."""
        try:
            await asyncio.wait_for(worker.lease(load), LEASE_WAIT_S)
        except Exception as exc:  # noqa: BLE001 - a dead actor is found by its calls; leases go on
            log.debug("lease on actor %d failed: %s", worker.stats.index, exc)

    def others(self) -> Load:
        """Open and speaking sessions of the other fronts, as the actors last reported them
        (each front's highest figure over the actors: the reports are up to a lease apart)."""
        fronts: dict[str, Load] = {}
        for worker in self.workers:
            for name, load in worker.report.get("fronts", {}).items():
                known = fronts.get(name, Load(0, 0))
                fronts[name] = Load(
                    max(known.open_sessions, load.get("open", 0)), max(known.speaking, load.get("speaking", 0))
                )
        fronts.pop(self.front, None)
        return sum(fronts.values(), Load(0, 0))

    async def reserve(self, mine: Load) -> Load:
        """Count one more session of this front on the first actor, and read the others' loads
        from it in the same call: two fronts admitting at once see each other."""
        alive = [w for w in self.workers if w.alive]
        if alive:
            await self._lease(alive[0], Load(mine.open_sessions + 1, mine.speaking))
        return self.others()

    def stats(self) -> list[dict[str, Any]]:
        out = super().stats()
        for row, worker in zip(out, self.workers, strict=True):
            report = worker.report
            row["cluster"] = {
                "pid": report.get("pid", worker.pid),
                "front": self.front,
                "fronts": sorted(report.get("fronts", {})),
                "ahead_by_front": report.get("ahead_by_front", {}),
                "jobs_by_front": report.get("jobs_by_front", {}),
                "queued": report.get("queued", 0),
                "predicted_finish_s": report.get("predicted_finish_s", 0.0),
            }
        return out

    async def close(self) -> None:
        if self._leases is not None:
            self._leases.cancel()
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
