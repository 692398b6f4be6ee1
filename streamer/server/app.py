"""The aiohttp application: wiring, start-up (workers, templates), static web/."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from streamer import ice
from streamer.avatar import cache
from streamer.avatar.prepared import PreparedTemplate
from streamer.avatar.sources import TemplateSource, discover, file_sha256
from streamer.config import Settings
from streamer.core.clock import Clock, MonotonicClock
from streamer.errors import NotFound, NotReady
from streamer.metrics import Metrics
from streamer.pool.base import RenderPool
from streamer.pool.front.factory import create_pool
from streamer.pool.front.report import PoolGauges
from streamer.render.prepare import renderer_cache
from streamer.server import access, api, openapi, ops, whep
from streamer.server.decoding import Decoders
from streamer.server.grant_store import create_store
from streamer.server.grants import Grants
from streamer.server.http import cors, errors, forwarded, loopback_host
from streamer.server.keys import (
    AUDIO_DECODERS,
    GRANTS,
    METRICS,
    POOL_GAUGES,
    SESSIONS,
    SETTINGS,
    STARTUP,
)
from streamer.server.sessions import SessionManager
from streamer.server.state import Startup
from streamer.webrtc import encoding, ports

log = logging.getLogger(__name__)
MAX_HEADER_LINE = 8190
WEB_FILE = re.compile(r"[A-Za-z0-9_-]+\.(html|js|css|svg|png|ico|webmanifest)")


def load_cached(source: TemplateSource, cache_dir: Path, key: dict[str, str]) -> PreparedTemplate:
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
        await app[AUDIO_DECODERS].warm()
        sources = discover(settings.templates_dir)
        state.discovered = {s.id: s.name for s in sources.values()}
        for source in sources.values():
            state.phase = f"preparing {source.id}"
            try:
                key = await manager.pool.prepare(source.id)
                template = await asyncio.get_running_loop().run_in_executor(
                    None, load_cached, source, settings.cache_dir, key
                )
            except Exception as exc:  # noqa: BLE001 - one bad template must not stop the rest
                log.error("template %s is not available: %s", source.id, exc)
                state.failed[source.id] = str(exc)
                continue
            manager.templates[source.id] = template
        state.ready = bool(manager.templates)
        state.phase = "ready" if state.ready else "no usable template"
        log.info(
            "ready: %d templates (%s), renderer %s on %s",
            len(manager.templates),
            ", ".join(sorted(manager.templates)),
            manager.pool.renderer,
            ", ".join(w["device"] for w in manager.pool.stats()),
        )
    except Exception as exc:
        log.exception("start-up failed")
        state.phase = "failed"
        state.error = str(exc)


async def on_startup(app: web.Application) -> None:
    settings = app[SETTINGS]
    if settings.ice_port_min:
        ports.install(asyncio.get_running_loop(), settings.ice_port_min, settings.ice_port_max)
    app[STARTUP].task = asyncio.get_running_loop().create_task(_start(app))
    await _resolve_ice(app[SETTINGS])


async def _resolve_ice(settings: Settings) -> None:
    """Warn when viewers may not reach the media; look the ICE servers' names up once."""
    warning = ice.unreachable_warning(not settings.public_binding(), settings.ice_servers)
    if warning:
        log.warning(warning)
    if settings.ice_servers:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ice-dns") as resolver:
            await asyncio.get_running_loop().run_in_executor(resolver, ice.resolve, settings.ice_servers)


async def on_cleanup(app: web.Application) -> None:
    task = app[STARTUP].task
    if task is not None and not task.done():
        task.cancel()
    await app[SESSIONS].close_all()
    await app[SESSIONS].pool.close()
    await asyncio.get_running_loop().run_in_executor(None, app[AUDIO_DECODERS].close)
    await app[GRANTS].store.close()


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[SETTINGS].web_dir / "index.html")


async def web_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    path = request.app[SETTINGS].web_dir / name
    if not WEB_FILE.fullmatch(name) or not path.is_file():
        raise NotFound(f"no file {name!r}")
    return web.FileResponse(path)


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
    app = web.Application(
        middlewares=[forwarded, cors, errors, loopback_host], client_max_size=settings.max_audio_bytes
    )
    metrics_ = Metrics()
    if pool is None:
        pool = create_pool(settings, progress=True)
    app[SETTINGS] = settings
    app[METRICS] = metrics_
    app[AUDIO_DECODERS] = Decoders(timeout_s=settings.decode_timeout_s)
    app[SESSIONS] = SessionManager(settings, pool, metrics_, clock_factory)
    app[STARTUP] = Startup()
    secret = settings.grant_secret or settings.key or secrets.token_urlsafe(32)
    app[GRANTS] = Grants(secret, store=create_store(settings.grant_store))
    app[POOL_GAUGES] = PoolGauges(metrics_.registry)
    app.add_routes(api.routes)
    app.add_routes(whep.routes())
    app.router.add_get("/", index)
    app.add_routes(ops.routes())
    app.add_routes(access.routes())
    app.router.add_get("/openapi.json", openapi.serve)
    app.router.add_get("/{name}", web_file)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def server_options(settings: Settings) -> dict[str, Any]:
    """`web.AppRunner` keywords that bound what a slow or bloated client can hold: headers must
    arrive within `read_timeout_s` of the connection (or of the previous response), at most
    `max_headers` lines of at most 8 KiB each (bodies: `read_capped`)."""
    return {
        "keepalive_timeout": settings.read_timeout_s,
        "max_headers": settings.max_headers,
        "max_line_size": MAX_HEADER_LINE,
        "max_field_size": MAX_HEADER_LINE,
    }


def _h264_codec(settings: Settings) -> str:
    if settings.h264_encoder == "auto":
        return "h264_nvenc" if encoding.nvenc_available() else "libx264"
    return settings.h264_encoder
