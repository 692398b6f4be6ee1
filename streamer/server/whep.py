"""WHEP (draft-ietf-wish-whep): a viewer posts an SDP offer and gets the stream back.

`POST /whep/{template}` opens a session like `POST /api/sessions` does, but speaks SDP
instead of JSON; the session token comes back in `X-Session-Token` so the caller can control
the session through `/api/sessions/{id}` (named by the `Link` header). The configured ICE
servers come as `Link: <…>; rel="ice-server"` headers (TURN credentials only to an authorised
caller). No trickle ICE: `PATCH` answers 405 as the draft allows, so the offer should carry
its candidates, as the answer does. `DELETE` takes the bearer the player sent on `POST`.
CORS (preflight, exposing `Location`, `Link` and the token header) is the middleware's job.
"""

from __future__ import annotations

import logging

from aiohttp import web

from streamer import ice
from streamer.errors import BadInput, MethodNotAllowed, UnsupportedMedia
from streamer.server.api import SESSION_ID
from streamer.server.guard import authorize_open, authorize_session, has_key
from streamer.server.http import read_capped
from streamer.server.keys import SESSIONS, SETTINGS
from streamer.server.lifetime import open_session

log = logging.getLogger(__name__)

SDP_TYPE = "application/sdp"
TOKEN_HEADER = "X-Session-Token"
MAX_SDP_BYTES = 64 * 1024
ALLOW = "OPTIONS, POST, PATCH, DELETE"


async def _read_offer(request: web.Request) -> str:
    if request.content_type != SDP_TYPE:
        raise UnsupportedMedia(f"WHEP wants Content-Type {SDP_TYPE}, got {request.content_type or 'none'}")
    body = await read_capped(request, MAX_SDP_BYTES, "the offer")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("malformed SDP: not UTF-8 text") from None
    return text  # the session checks the offer itself, for WHEP and the JSON API alike


def ice_links(request: web.Request, ttl_s: float) -> list[str]:
    """The ICE servers as `Link` headers; TURN with credentials valid `ttl_s` (none when 0)."""
    settings = request.app[SETTINGS]
    servers = ice.servers_for(settings.ice_servers, settings.turn_secret, ttl_s)
    return [link for s in servers if (link := ice.link_header(s, ttl_s > 0)) is not None]


async def post_offer(request: web.Request) -> web.Response:
    template_id = request.match_info["template"]
    grant = await authorize_open(request)  # before the body is read
    offer = await _read_offer(request)
    opened = await open_session(request, template_id, offer, grant)
    log.info("WHEP session %s opened on %s", opened.session_id, template_id)
    response = web.Response(
        status=201,
        body=opened.sdp.encode("utf-8"),
        content_type=SDP_TYPE,
        headers={"Location": f"/whep/{opened.session_id}", TOKEN_HEADER: opened.token},
    )
    response.headers.add("Link", f'</api/sessions/{opened.session_id}>; rel="session"')
    ttl = min(request.app[SETTINGS].turn_ttl_s, request.app[SESSIONS].remaining_s(opened.session_id))
    for link in ice_links(request, ttl):
        response.headers.add("Link", link)
    return response


def _resource(request: web.Request) -> str:
    session_id = request.match_info["session_id"]
    if not SESSION_ID.fullmatch(session_id):
        raise BadInput(f"no WHEP resource {session_id!r}")
    return session_id


def _owned(request: web.Request) -> str:
    """The resource's session id, when the caller may control it: the bearer it posted with
    (or the token, or the key); on a keyless loopback server, the unguessable URL is enough."""
    session_id = _resource(request)
    if request.app[SETTINGS].key is None and "Authorization" not in request.headers:
        request.app[SESSIONS].get(session_id)
    else:
        authorize_session(request, session_id)
    return session_id


async def delete_session(request: web.Request) -> web.Response:
    session_id = _owned(request)
    await request.app[SESSIONS].close(session_id)
    log.info("WHEP session %s ended by its viewer", session_id)
    return web.Response(status=200)


async def patch_session(request: web.Request) -> web.Response:
    _owned(request)
    raise MethodNotAllowed("trickle ICE is not supported: send the candidates in the offer")


async def options(request: web.Request) -> web.Response:
    response = web.Response(status=204, headers={"Accept-Post": SDP_TYPE, "Allow": ALLOW})
    for link in ice_links(request, request.app[SETTINGS].turn_ttl_s if has_key(request) else 0.0):
        response.headers.add("Link", link)
    return response


def routes() -> list[web.RouteDef]:
    return [
        web.post("/whep/{template}", post_offer),
        web.delete("/whep/{session_id}", delete_session),
        web.patch("/whep/{session_id}", patch_session),
        web.options("/whep/{template}", options),
    ]
