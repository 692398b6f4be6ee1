"""The render plane in `/api/stats` and `/metrics`: capacity, load, queues, batches, misses."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from streamer.pool.base import Capacity
from streamer.pool.front.admission import Decision, Load


def summary(
    capacity: Capacity, load: Load, decision: Decision, refusals: int, devices: list[dict[str, Any]]
) -> dict[str, Any]:
    """The `render` block of `/api/stats`."""
    batch_jobs: dict[str, int] = {}
    for d in devices:
        for k, v in d.get("batch_jobs", {}).items():
            batch_jobs[k] = batch_jobs.get(k, 0) + v
    return {
        "capacity_fps": capacity.frames_per_s,
        "devices_running": capacity.devices,
        "speaking_sessions_capacity": decision.sessions,
        "load": {
            "open": load.open_sessions,
            "speaking": load.speaking,
            "planned_fps": decision.planned_fps,
            "budget_fps": decision.budget_fps,
        },
        "at_capacity": not decision.admit,
        "refused_sessions": refusals,
        "queued_jobs": sum(d.get("queued", 0) for d in devices),
        "deadline_misses": sum(d.get("deadline_misses", 0) for d in devices),
        "batch_jobs": batch_jobs,
    }


class PoolGauges:
    """Prometheus gauges, set from the pool's stats at each scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, text, list(labels), registry=registry)

        device = ("index", "device")
        self.capacity = gauge("streamer_render_capacity_fps", "Frames/s the running workers can render")
        self.planned = gauge("streamer_render_planned_fps", "Frames/s the open sessions plan to use")
        self.refused = gauge("streamer_sessions_refused", "Sessions refused at capacity (429)")
        self.fps = gauge("streamer_worker_frames_per_s", "Measured capacity of a worker", device)
        self.queued = gauge("streamer_worker_queued_jobs", "Jobs queued in a worker", device)
        self.misses = gauge("streamer_worker_deadline_misses", "Jobs a worker finished past their deadline", device)
        self.calls = gauge("streamer_worker_calls", "Model calls of a worker, by jobs per call", (*device, "jobs"))

    def update(self, capacity: Capacity, decision: Decision, refusals: int, devices: list[dict[str, Any]]) -> None:
        self.capacity.set(capacity.frames_per_s)
        self.planned.set(decision.planned_fps)
        self.refused.set(refusals)
        for d in devices:
            labels = (str(d["index"]), d["device"])
            self.fps.labels(*labels).set(d.get("frames_per_s", 0.0) if d["alive"] else 0.0)
            self.queued.labels(*labels).set(d.get("queued", 0))
            self.misses.labels(*labels).set(d.get("deadline_misses", 0))
            for jobs, count in d.get("batch_jobs", {}).items():
                self.calls.labels(*labels, jobs).set(count)
