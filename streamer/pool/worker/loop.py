"""One render worker's loop, the same in a worker process and in a Ray actor.

`RenderLoop` owns the renderer, its templates and the EDF queue; a transport (the pipe of
`main.py`, or the actor of `ray_actor.py`) feeds `submit`/`cancel` from one thread while
`run` renders in another and hands every answer to `send`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from streamer.errors import NotFound, StreamerError
from streamer.pool.costs import CostCurve, measure
from streamer.pool.wire import error_reply, job_from_message
from streamer.pool.worker.scheduler import Counters, Entry, JobQueue
from streamer.render.base import Renderer
from streamer.render.registry import create_renderer
from streamer.settings_slices import RenderSettings

if TYPE_CHECKING:
    from streamer.avatar.prepared import PreparedTemplate
    from streamer.avatar.sources import TemplateSource
    from streamer.render.base import RenderJob

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any], dict[str, np.ndarray] | None], None]


class RenderLoop:
    def __init__(self, settings: RenderSettings, device: str, progress: bool = False) -> None:
        self.settings = settings
        self.renderer: Renderer = create_renderer(settings, device)
        self.curve: CostCurve = measure(self.renderer, settings.batch_size)
        self.queue = JobQueue(settings.batch_size, self.curve.seconds, settings.batch_across_jobs)
        self.counters = Counters()
        self.templates: dict[str, PreparedTemplate] = {}
        self._parts: dict[int, list[tuple[int, np.ndarray]]] = {}
        """Crops of the parts rendered so far of each job in the queue, by job id."""
        self._frames: dict[int, int] = {}
        """Frames of each job in the queue (or rendering), by job id."""
        self._progress = progress

    def hello(self) -> dict[str, Any]:
        return {
            "type": "ready",
            "renderer": self.renderer.name,
            "curve": self.curve.to_json(),
            "audio_context_units": self.renderer.audio_context_units,
        }

    def submit(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Queue a message's work: a render job, or control work (prepare) ahead of renders."""
        if meta["op"] == "render":
            job = job_from_message(meta, arrays)
            self._frames[int(meta["id"])] = job.frames
            self.queue.put(int(meta["id"]), job)
        else:
            self.queue.put_control(int(meta["id"]), meta)

    def cancel(self, session_id: str) -> set[int]:
        """Drop that session's queued jobs; returns their ids."""
        dropped = set(self.queue.cancel(session_id))
        self.counters.cancelled += len(dropped)
        for job_id in dropped:  # a part rendering now finds its job gone, and is dropped
            self._frames.pop(job_id, None)
        return dropped

    def run(self, send: Send) -> None:
        """Render until the queue closes."""
        while (batch := self.queue.take()) is not None:
            if batch[0].job is None:
                send(self._control(batch[0]), None)
            else:
                send({"type": "started", "ids": [e.id for e in batch]}, None)
                for entry, reply, crops in self._render(batch):
                    whole = self._assemble(entry, crops) if reply["ok"] and crops is not None else None
                    if reply["ok"] and whole is None:
                        continue  # more parts to come, or its job was cancelled
                    self._frames.pop(entry.id, None)
                    self._parts.pop(entry.id, None)
                    send(
                        {"type": "done", "id": entry.id, **reply, "counters": asdict(self.counters)},
                        {"crops": whole} if whole is not None else None,
                    )

    def _assemble(self, entry: Entry, crops: np.ndarray) -> np.ndarray | None:
        """The job's crops once its last part is rendered; None before (or if it was cancelled)."""
        total = self._frames.get(entry.id)
        if total is None:
            self._parts.pop(entry.id, None)
            return None
        if entry.offset == 0 and len(crops) == total:
            return crops
        parts = self._parts.setdefault(entry.id, [])
        parts.append((entry.offset, crops))
        if sum(len(c) for _, c in parts) < total:
            return None
        return np.concatenate([c for _, c in sorted(parts, key=lambda p: p[0])])

    def _render(self, batch: list[Entry]) -> list[tuple[Entry, dict[str, Any], np.ndarray | None]]:
        """Each entry's reply; a failed batch is retried job by job, so one bad job fails alone."""
        started = time.monotonic()
        out: list[tuple[Entry, dict[str, Any], np.ndarray | None]]
        try:
            crops = self.renderer.render_batch([(self._template(_job(e).template_id), _job(e)) for e in batch])
            out = [(e, {"ok": True, "queue": self.queue.depth()}, c) for e, c in zip(batch, crops, strict=True)]
        except Exception as exc:
            if len(batch) > 1:
                return [r for e in batch for r in self._render([e])]
            if not isinstance(exc, StreamerError):
                log.exception("job %s failed", batch[0].id)
            out = [(batch[0], error_reply(exc), None)]
        finished = time.monotonic()
        self.counters.record(batch, finished - started, finished)
        return out

    def _control(self, entry: Entry) -> dict[str, Any]:
        from streamer.render.prepare import cache_key

        try:
            if entry.op.get("op") != "prepare":
                raise StreamerError(f"unknown op {entry.op.get('op')!r}")
            template_id = str(entry.op["template_id"])
            self._template(template_id, force=bool(entry.op.get("force")))
            key = cache_key(self._source(template_id), self.renderer, self.settings.models)
            return {"type": "done", "id": entry.id, "ok": True, "key": key}
        except Exception as exc:
            if not isinstance(exc, StreamerError):
                log.exception("preparing failed")
            return {"type": "done", "id": entry.id, **error_reply(exc)}

    def _source(self, template_id: str) -> TemplateSource:
        from streamer.avatar.sources import discover

        sources = discover(self.settings.templates_dir)
        if template_id not in sources:
            raise NotFound(f"unknown template {template_id!r}")
        return sources[template_id]

    def _template(self, template_id: str, force: bool = False) -> PreparedTemplate:
        from streamer.render.prepare import load_or_prepare

        if force or template_id not in self.templates:
            self.templates[template_id] = load_or_prepare(
                self._source(template_id),
                self.renderer,
                self.settings.cache_dir,
                force=force,
                progress=self._progress,
                models=self.settings.models,
            )
        return self.templates[template_id]


def _job(entry: Entry) -> RenderJob:
    """The render job of an entry of a render batch (control entries come alone, never here)."""
    assert entry.job is not None, "a render batch holds render jobs only"
    return entry.job
