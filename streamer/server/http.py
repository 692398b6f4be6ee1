"""Middlewares: errors as JSON (the one place that maps StreamerError to a status), CORS,
the loopback Host rule and X-Forwarded-* from trusted proxies; a capped body reader."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from streamer.config import is_loopback_host
from streamer.errors import Forbidden, StreamerError, TooLarge
from streamer.server.keys import METRICS, SETTINGS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EXPOSED_HEADERS = "Location, Link, X-Session-Token"
FORWARDED_CLIENT = web.RequestKey("forwarded_client", bool)
"""Request key: True when `request.remote` came from X-Forwarded-For."""
HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


async def read_capped(request: web.Request, limit: int, what: str) -> bytes:
    """The whole body, refused with 413 as soon as it passes `limit` bytes (however it is sent),
    and with 408 when it has not all arrived within `read_timeout_s` (a client dripping it)."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"{what} is larger than {limit} bytes")
    body = bytearray()
    deadline = request.app[SETTINGS].read_timeout_s
    try:
        async with asyncio.timeout(deadline):
            async for chunk in request.content.iter_chunked(16 * 1024):
                body += chunk
                if len(body) > limit:
                    raise TooLarge(f"{what} is larger than {limit} bytes")
    except TimeoutError:
        log.info("%s %s: %s took longer than %g s to arrive", request.method, request.path, what, deadline)
        raise web.HTTPRequestTimeout(text=f"{what} did not arrive within {deadline:g} s") from None
    return bytes(body)


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Named errors become their status; anything else is a 500, logged and counted (never a 4xx)."""
    try:
        return await handler(request)
    except StreamerError as exc:
        if exc.status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc)
        response = error_response(exc.status, str(exc))
        retry = getattr(exc, "retry_after_s", None)
        if retry:
            response.headers["Retry-After"] = str(max(1, round(retry)))
        return _counted(request, response)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        return _counted(request, error_response(exc.status, message))
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _counted(request, error_response(500, "internal error (logged on the server)"))


def _counted(request: web.Request, response: web.Response) -> web.Response:
    request.app[METRICS].http_errors.labels(str(response.status)).inc()
    return response


@web.middleware
async def loopback_host(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Without a server key, answer only requests addressed to a loopback name.

    A web page can point any DNS name at 127.0.0.1 (DNS rebinding) and then call a keyless
    local server as its own origin; checking the Host header closes that door.
    """
    if request.app[SETTINGS].key is None:
        host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
        if not is_loopback_host(host):
            raise Forbidden(f"host {request.host} is not served without a server key (--key)")
    return await handler(request)


def _last(values: list[str]) -> str | None:
    """The value the nearest proxy added to a forwarding header, all its lines taken together."""
    parts = [p.strip() for p in ",".join(values).split(",") if p.strip()]
    return parts[-1] if parts else None


def trusted(address: str | None, proxies: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(p, strict=False) for p in proxies)


def client_address(forwarded_for: str | list[str] | None, proxies: tuple[str, ...]) -> str | None:
    """The rightmost X-Forwarded-For address that is not one of our proxies, every line of the
    header joined first (a proxy may append a line of its own instead of extending the client's)."""
    lines = [forwarded_for] if isinstance(forwarded_for, str) else list(forwarded_for or [])
    hops = [h.strip() for h in ",".join(lines).split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop, proxies):
            return hop if _is_ip(hop) else None
    return hops[0] if hops and _is_ip(hops[0]) else None


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@web.middleware
async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """From a trusted proxy only, X-Forwarded-For/-Proto/-Host give the client, scheme and host."""
    proxies = request.app[SETTINGS].trusted_proxies
    if not proxies or not trusted(request.remote, proxies):
        return await handler(request)
    changes: dict[str, Any] = {}  # clone's keyword arguments, of several types
    remote = client_address(request.headers.getall("X-Forwarded-For", []), proxies)
    proto = _last(request.headers.getall("X-Forwarded-Proto", []))
    host = _last(request.headers.getall("X-Forwarded-Host", []))
    if remote:
        changes["remote"] = remote
    if proto in ("http", "https"):
        changes["scheme"] = proto
    if host and HOST.fullmatch(host):
        changes["host"] = host
    if not changes:
        return await handler(request)
    clone = request.clone(**changes)
    clone[FORWARDED_CLIENT] = remote is not None  # a named address never gets the loopback exemption
    return await handler(clone)


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
            response.headers["Accept-Patch"] = "application/trickle-ice-sdpfrag"
    else:
        response = await handler(request)
    response.headers.update(
        {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Expose-Headers": EXPOSED_HEADERS,
            "Vary": "Origin",
        }
    )
    return response
