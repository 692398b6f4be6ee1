"""A render worker process: one renderer on one device, serving jobs from its pipe."""

from __future__ import annotations

import logging
import os
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from streamer.config import settings_from_json
from streamer.errors import StreamerError
from streamer.pool.wire import decode, encode
from streamer.render.base import RenderJob
from streamer.render.registry import create_renderer

log = logging.getLogger(__name__)


def worker_main(
    conn: Connection, index: int, device: str, settings_json: dict[str, Any], progress: bool = False
) -> None:
    logging.basicConfig(
        level=os.environ.get("STREAMER_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s %(levelname)s worker{index}[{device}] %(name)s: %(message)s",
    )
    from streamer.avatar.sources import discover
    from streamer.render.prepare import cache_key, load_or_prepare

    settings = settings_from_json(settings_json)
    if device == "cpu":
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        renderer = create_renderer(settings, device)
    except StreamerError as exc:
        conn.send_bytes(encode({"type": "failed", "error": str(exc)}))
        return
    hello = {"type": "ready", "renderer": renderer.name, "audio_context_units": renderer.audio_context_units}
    conn.send_bytes(encode(hello))
    templates: dict[str, Any] = {}

    def source(template_id: str):
        sources = discover(settings.templates_dir)
        if template_id not in sources:
            raise StreamerError(f"unknown template {template_id!r}")
        return sources[template_id]

    def template(template_id: str, force: bool = False):
        if force or template_id not in templates:
            templates[template_id] = load_or_prepare(
                source(template_id), renderer, settings.cache_dir, force=force, progress=progress,
                models=settings.models,
            )
        return templates[template_id]

    while True:
        try:
            meta, arrays = decode(conn.recv_bytes())
        except (EOFError, OSError):
            return
        reply: dict[str, Any] = {"id": meta.get("id"), "ok": True}
        out: dict[str, np.ndarray] = {}
        try:
            if meta["op"] == "render":
                job = RenderJob(
                    template_id=meta["template_id"],
                    positions=arrays["positions"],
                    audio=arrays["audio"],
                    first_unit=int(meta["first_unit"]),
                    final=bool(meta["final"]),
                )
                out["crops"] = renderer.render(template(job.template_id), job)
            elif meta["op"] == "prepare":
                template(meta["template_id"], force=bool(meta.get("force")))
                reply["key"] = cache_key(source(meta["template_id"]), renderer, settings.models)
            elif meta["op"] == "stop":
                return
            else:
                raise StreamerError(f"unknown op {meta['op']!r}")
        except Exception as exc:  # noqa: BLE001 - reported to the caller, the worker carries on
            if not isinstance(exc, StreamerError):
                log.exception("job %s failed", meta.get("id"))
            reply = {"id": meta.get("id"), "ok": False, "error": f"{type(exc).__name__}: {exc}"}
            out = {}
        conn.send_bytes(encode(reply, out))
