"""Middlewares: errors as JSON (the one place that maps StreamerError to a status), and CORS."""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from aiohttp import web

from streamer.errors import StreamerError
from streamer.server.keys import SETTINGS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EXPOSED_HEADERS = "Location, Link, X-Session-Token"


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except StreamerError as exc:
        if exc.status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc)
        response = error_response(exc.status, str(exc))
        retry = getattr(exc, "retry_after_s", None)
        if retry:
            response.headers["Retry-After"] = str(max(1, round(retry)))
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        return error_response(exc.status, message)
    except Exception:  # noqa: BLE001 - a bug must not take the server down
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error (logged on the server)")


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@web.middleware
async def loopback_host(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Without a server key, answer only requests addressed to a loopback name.

    A web page can point any DNS name at 127.0.0.1 (DNS rebinding) and then call a keyless
    local server as its own origin; checking the Host header closes that door.
    """
    if request.app[SETTINGS].key is None:
        host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
        if host not in LOOPBACK_HOSTS:
            return error_response(403, f"host {request.host} is not served without a server key (--key)")
    return await handler(request)


def origin_allowed(request: web.Request, origin: str) -> bool:
    own = f"{request.scheme}://{request.host}"
    return origin == own or origin in request.app[SETTINGS].cors_origins


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS for the configured allow-list only; other origins may not call the API at all.

    Outermost, so that error responses carry the headers too and a page on an allowed origin
    can read the server's message.
    """
    origin = request.headers.get("Origin")
    if origin is None or request.path == "/embed.js":
        return await handler(request)
    if not origin_allowed(request, origin):
        return error_response(403, f"origin {origin} is not allowed (add it with --cors)")
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
        if request.path.startswith("/whep/"):
            response.headers["Accept-Post"] = "application/sdp"
    else:
        response = await handler(request)
    response.headers.update(
        {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Expose-Headers": EXPOSED_HEADERS,
            "Vary": "Origin",
        }
    )
    return response
