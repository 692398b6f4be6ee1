"""The aiohttp application: wiring, start-up (workers, templates), static web/, health, stats."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from streamer.avatar import cache
from streamer.avatar.prepared import PreparedTemplate
from streamer.avatar.sources import TemplateSource, discover, file_sha256
from streamer.config import Settings
from streamer.errors import NotFound, NotReady
from streamer.media import encoding
from streamer.media.clock import Clock, MonotonicClock
from streamer.metrics import Metrics
from streamer.pool.base import RenderPool
from streamer.pool.factory import create_pool
from streamer.pool.report import PoolGauges, summary
from streamer.render.prepare import renderer_cache
from streamer.server import api, openapi, whep
from streamer.server.http import cors, errors, loopback_host
from streamer.server.keys import DECODERS, METRICS, SESSIONS, SETTINGS, STARTUP
from streamer.server.sessions import SessionManager

log = logging.getLogger(__name__)
WEB_FILE = re.compile(r"[A-Za-z0-9_-]+\.(html|js|css|svg|png|ico|webmanifest)")


def load_cached(source: TemplateSource, cache_dir, key: dict[str, str]) -> PreparedTemplate:
    """The template a worker has just prepared, read back from the cache by the web process."""
    folder = renderer_cache(cache_dir, key["renderer"])
    template = cache.load(folder, source.id, None, file_sha256(source.path), key)  # frames mapped
    if template is None:
        raise NotReady(f"the cache of {source.id} could not be read back")
    return template


async def _start(app: web.Application) -> None:
    """Start the workers, prepare what is missing, then say ready."""
    state = app[STARTUP]
    manager = app[SESSIONS]
    settings = app[SETTINGS]
    try:
        await manager.pool.start()
        sources = discover(settings.templates_dir)
        state["discovered"] = {s.id: s.name for s in sources.values()}
        for source in sources.values():
            state["phase"] = f"preparing {source.id}"
            try:
                key = await manager.pool.prepare(source.id)
                template = await asyncio.get_running_loop().run_in_executor(
                    None, load_cached, source, settings.cache_dir, key
                )
            except Exception as exc:  # noqa: BLE001 - one bad template must not stop the rest
                log.error("template %s is not available: %s", source.id, exc)
                state["failed"][source.id] = str(exc)
                continue
            manager.templates[source.id] = template
        state["ready"] = bool(manager.templates)
        state["phase"] = "ready" if state["ready"] else "no usable template"
        log.info(
            "ready: %d templates (%s), renderer %s on %s",
            len(manager.templates), ", ".join(sorted(manager.templates)), manager.pool.renderer,
            ", ".join(w["device"] for w in manager.pool.stats()),
        )
    except Exception as exc:  # noqa: BLE001 - reported by /readyz and the stats
        log.exception("start-up failed")
        state["phase"] = f"failed: {exc}"


async def on_startup(app: web.Application) -> None:
    app[STARTUP]["task"] = asyncio.get_running_loop().create_task(_start(app))


async def on_cleanup(app: web.Application) -> None:
    task = app[STARTUP].get("task")
    if task is not None and not task.done():
        task.cancel()
    await app[SESSIONS].close_all()
    await app[SESSIONS].pool.close()
    app[DECODERS].shutdown(wait=False, cancel_futures=True)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[SETTINGS].web_dir / "index.html")


async def web_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    path = request.app[SETTINGS].web_dir / name
    if not WEB_FILE.fullmatch(name) or not path.is_file():
        raise NotFound(f"no file {name!r}")
    return web.FileResponse(path)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STARTUP]
    body = {"ready": state["ready"], "phase": state["phase"], "failed": state["failed"]}
    if state["ready"]:
        body["at_capacity"] = not request.app[SESSIONS].admission().admit
    return web.json_response(body, status=200 if state["ready"] else 503)


def stats_json(app: web.Application) -> dict[str, Any]:
    manager, metrics, state = app[SESSIONS], app[METRICS], app[STARTUP]
    devices = manager.pool.stats()
    alive = sum(1 for d in devices if d["alive"])
    if not state["ready"]:
        status = "starting" if not state["phase"].startswith("failed") else "failed"
    else:
        status = "running" if alive == len(devices) else "degraded" if alive else "down"
    sessions = [s.describe() for s in manager.sessions.values()]
    return {
        "totalRequests": metrics.total_requests,
        "completedRequests": metrics.completed_requests,
        "completionRate": metrics.completion_rate(),
        "pythonEngineStatus": status,
        "templateUsage": dict(metrics.template_usage),
        "interruptedRequests": metrics.interrupted_requests,
        "renderer": manager.pool.renderer,
        "degradedTemplates": sorted(t.id for t in manager.templates.values() if t.degraded),
        "devices": devices,
        "sessions": {"open": len(sessions), "max": manager.settings.max_sessions, "list": sessions},
        "render": summary(manager.pool.capacity(), manager.load(), manager.admission(), manager.refusals, devices),
        "latency": metrics.latency_summary(),
        "stalls": sum(s["stalls"] for s in sessions),
        "uptime_s": round(time.monotonic() - state["started"], 1),
    }


async def stats(request: web.Request) -> web.Response:
    return web.json_response(stats_json(request.app))


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    devices = app[SESSIONS].pool.stats()
    gauge: Gauge = app[STARTUP]["workers_gauge"]
    for d in devices:
        gauge.labels(str(d["index"]), d["device"]).set(1 if d["alive"] else 0)
    manager = app[SESSIONS]
    app[STARTUP]["pool_gauges"].update(manager.pool.capacity(), manager.admission(), manager.refusals, devices)
    body = generate_latest(app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(
    settings: Settings,
    pool: RenderPool | None = None,
    clock_factory: Callable[[], Clock] = MonotonicClock,
) -> web.Application:
    encoding.install(
        encoding.EncoderSettings(
            bitrate=settings.video_bitrate,
            x264_preset=settings.x264_preset,
            h264_codec=_h264_codec(settings),
            vp8_cpu_used=settings.vp8_cpu_used,
        )
    )
    app = web.Application(middlewares=[loopback_host, cors, errors], client_max_size=settings.max_audio_bytes)
    metrics_ = Metrics()
    if pool is None:
        pool = create_pool(settings, progress=True)
    app[SETTINGS] = settings
    app[METRICS] = metrics_
    app[DECODERS] = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")
    app[SESSIONS] = SessionManager(settings, pool, metrics_, clock_factory)
    app[STARTUP] = {
        "ready": False,
        "phase": "starting workers",
        "failed": {},
        "discovered": {},
        "started": time.monotonic(),
        "workers_gauge": Gauge(
            "streamer_worker_alive", "Render worker is running", ["index", "device"], registry=metrics_.registry
        ),
        "pool_gauges": PoolGauges(metrics_.registry),
    }
    app.add_routes(api.routes)
    app.add_routes(whep.routes())
    app.router.add_get("/", index)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/musetalk/stats", stats)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi.serve)
    app.router.add_get("/{name}", web_file)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def _h264_codec(settings: Settings) -> str:
    if settings.h264_encoder == "auto":
        return "h264_nvenc" if encoding.nvenc_available() else "libx264"
    return settings.h264_encoder
