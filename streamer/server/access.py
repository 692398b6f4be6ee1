"""What a page needs to connect: session grants (`POST /api/grants`) and the ICE servers."""

from __future__ import annotations

import time

from aiohttp import web

from streamer import ice
from streamer.errors import BadInput, Unauthorized
from streamer.server.api import SESSION_ID, read_json
from streamer.server.auth import bearer_matches
from streamer.server.grants import grant_request
from streamer.server.guard import bearer, has_key
from streamer.server.keys import GRANTS, SESSIONS, SETTINGS


async def mint_grant(request: web.Request) -> web.Response:
    """The server key holder (a page's backend) gets a short-lived single-use session grant."""
    settings = request.app[SETTINGS]
    if settings.key is None:
        raise BadInput("this server has no key, so it needs no grants: open sessions directly")
    if not has_key(request):
        raise Unauthorized("minting a grant needs the server key (Authorization: Bearer <key>)")
    wanted = grant_request(await read_json(request), settings.grant_ttl_s, settings.grant_max_ttl_s)
    for template_id in wanted.templates:
        request.app[SESSIONS].template(template_id)  # 404 for an unknown one
    token, expires = request.app[GRANTS].mint(wanted.templates, wanted.ttl_s, wanted.max_session_s)
    return web.json_response({"grant": token, "expires": expires}, status=201)


async def relay_ttl_s(request: web.Request) -> float:
    """How long TURN credentials for this caller may last; 0 when it gets none.

    The key holder: `turn_ttl_s`. A live session's token (`?session=<id>`): no longer than the
    session may still last. A grant not used yet (a page asks before its offer): no longer than
    a session it opens could last. A used, expired or forged grant, or nothing: none.
    """
    settings = request.app[SETTINGS]
    if settings.key is None or has_key(request):
        return settings.turn_ttl_s
    token = bearer(request)
    if token is None:
        return 0.0
    session_id = request.query.get("session", "")
    sessions = request.app[SESSIONS]
    if SESSION_ID.fullmatch(session_id):
        held = sessions.open_sessions.get(session_id)
        if held is not None and bearer_matches(f"Bearer {token}", held.session.token):
            return min(settings.turn_ttl_s, sessions.remaining_s(session_id))
    try:
        grant = await request.app[GRANTS].unused(token)
    except Unauthorized:
        return 0.0
    longest = min(settings.max_session_s, grant.max_session_s or settings.max_session_s)
    return min(settings.turn_ttl_s, max(0.0, grant.expires - time.time()) + longest)


async def ice_servers(request: web.Request) -> web.Response:
    """`RTCConfiguration.iceServers` for the page: the same list the server's peers use."""
    settings = request.app[SETTINGS]
    ttl = await relay_ttl_s(request)
    servers = ice.servers_for(settings.ice_servers, settings.turn_secret, ttl)
    return web.json_response({"ice_servers": ice.browser_json(servers, ttl > 0)})


def routes() -> list[web.RouteDef]:
    return [web.post("/api/grants", mint_grant), web.get("/api/ice-servers", ice_servers)]
