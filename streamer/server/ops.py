"""Operations endpoints: /healthz, /readyz, /api/stats and /metrics.

Health and readiness stay open but say only ready/phase. On a server with a key, the stats
without it are aggregate counts (no session ids, no error text) and /metrics needs the key or
the separate metrics token (Prometheus `bearer_token`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamer.errors import Unauthorized
from streamer.pool.front.report import summary
from streamer.server.auth import bearer_matches
from streamer.server.guard import has_key
from streamer.server.keys import METRICS, POOL_GAUGES, SESSIONS, SETTINGS, STARTUP


def public_phase(app: web.Application) -> str:
    """The phase as anyone may see it: no paths, no exception text."""
    state, manager, settings = app[STARTUP], app[SESSIONS], app[SETTINGS]
    if state.draining:
        return "draining"
    if state.ready and (len(manager.sessions) >= settings.max_sessions or not manager.admission().admit):
        return "at_capacity"
    if state.ready:
        return "ready"
    if state.error or state.phase == "no usable template":
        return "failed"
    return "preparing" if state.phase.startswith("preparing") else "starting"


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STARTUP]
    ready = state.ready and not state.draining
    phase = public_phase(request.app)
    body = {"ready": ready, "phase": phase, "at_capacity": phase == "at_capacity"}
    return web.json_response(body, status=200 if ready else 503)


def _engine_status(app: web.Application, devices: list[dict[str, Any]]) -> str:
    state = app[STARTUP]
    if not state.ready:
        return "failed" if state.error else "starting"
    alive = sum(1 for d in devices if d["alive"])
    return "running" if alive == len(devices) else "degraded" if alive else "down"


def stats_json(app: web.Application, full: bool = True) -> dict[str, Any]:
    """Everything for the key holder; without the key on a keyed server, aggregate counts only."""
    manager, metrics, state = app[SESSIONS], app[METRICS], app[STARTUP]
    devices = manager.pool.stats()
    sessions = [s.describe() for s in manager.sessions.values()]
    body: dict[str, Any] = {
        "totalRequests": metrics.total_requests,
        "completedRequests": metrics.completed_requests,
        "completionRate": metrics.completion_rate(),
        "pythonEngineStatus": _engine_status(app, devices),
        "templateUsage": dict(metrics.template_usage),
        "interruptedRequests": metrics.interrupted_requests,
        "renderer": manager.pool.renderer,
        "degradedTemplates": sorted(t.id for t in manager.templates.values() if t.degraded),
        "sessions": {"open": len(sessions), "max": manager.settings.max_sessions},
        "latency": metrics.latency_summary(),
        "stalls": sum(s["stalls"] for s in sessions),
        "uptime_s": round(time.monotonic() - state.started, 1),
    }
    if full:
        body["devices"] = devices
        body["render"] = summary(
            manager.pool.capacity(), manager.load(), manager.admission(), manager.refusals, devices
        )
        body["sessions"]["list"] = sessions
        body["startup"] = {"phase": state.phase, "error": state.error, "failed": dict(state.failed)}
        body["process"] = process_json()
    else:
        body["devices"] = [{"index": d["index"], "alive": d["alive"]} for d in devices]
    return body


def process_json() -> dict[str, int]:
    """This process's asyncio tasks, threads and open files (what a leak would grow; bench/soak.py)."""
    fds = Path("/proc/self/fd")
    return {
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
        "fds": len(list(fds.iterdir())) if fds.is_dir() else -1,
    }


async def stats(request: web.Request) -> web.Response:
    full = request.app[SETTINGS].key is None or has_key(request)
    return web.json_response(stats_json(request.app, full))


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    authorization = request.headers.get("Authorization")
    if settings.key is not None and not (has_key(request) or bearer_matches(authorization, settings.metrics_token)):
        raise Unauthorized("/metrics needs the server key or the metrics token (Authorization: Bearer …)")
    manager = app[SESSIONS]
    devices = manager.pool.stats()
    app[METRICS].worker_states(devices)
    app[POOL_GAUGES].update(manager.pool.capacity(), manager.admission(), manager.refusals, devices)
    body = generate_latest(app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/stats", stats),
        web.get("/api/musetalk/stats", stats),
        web.get("/metrics", metrics),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
    ]
