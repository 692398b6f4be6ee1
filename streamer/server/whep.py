"""WHEP (draft-ietf-wish-whep): a viewer posts an SDP offer and gets the stream back.

`POST /whep/{template}` opens a session like `POST /api/sessions` does, but speaks SDP
instead of JSON; the session token comes back in `X-Session-Token` so the caller can control
the session through `/api/sessions/{id}` (named by the `Link` header). No trickle ICE: the
offer should carry its candidates, as the answer does. CORS (preflight, exposing `Location`,
`Link` and the token header) is the app's middleware's job.
"""

from __future__ import annotations

import logging

from aiohttp import web

from streamer.errors import BadInput, TooLarge, UnsupportedMedia
from streamer.server.auth import require_key
from streamer.server.keys import SESSIONS, SETTINGS

log = logging.getLogger(__name__)

SDP_TYPE = "application/sdp"
TOKEN_HEADER = "X-Session-Token"
MAX_SDP_BYTES = 64 * 1024


async def _read_offer(request: web.Request) -> str:
    if request.content_type != SDP_TYPE:
        raise UnsupportedMedia(f"WHEP wants Content-Type {SDP_TYPE}, got {request.content_type or 'none'}")
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        raise TooLarge(f"the offer is larger than {MAX_SDP_BYTES} bytes")
    body = b""
    async for chunk in request.content.iter_chunked(16 * 1024):  # the whole body, however it is cut
        body += chunk
        if len(body) > MAX_SDP_BYTES:
            raise TooLarge(f"the offer is larger than {MAX_SDP_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("malformed SDP: not UTF-8 text") from None
    return text  # the session checks the offer itself, for WHEP and the JSON API alike


async def post_offer(request: web.Request) -> web.Response:
    require_key(request.headers.get("Authorization"), request.app[SETTINGS].key)
    offer = await _read_offer(request)
    opened = await request.app[SESSIONS].open(request.match_info["template"], offer)
    log.info("WHEP session %s opened on %s", opened.session_id, request.match_info["template"])
    return web.Response(
        status=201,
        body=opened.sdp.encode("utf-8"),
        content_type=SDP_TYPE,
        headers={
            "Location": f"/whep/{opened.session_id}",
            "Link": f'</api/sessions/{opened.session_id}>; rel="session"',
            TOKEN_HEADER: opened.token,
        },
    )


async def delete_session(request: web.Request) -> web.Response:
    sessions = request.app[SESSIONS]
    session_id = request.match_info["session_id"]
    sessions.authorize(session_id, request.headers.get("Authorization"))
    await sessions.close(session_id)
    log.info("WHEP session %s ended by its viewer", session_id)
    return web.Response(status=200)


async def options(request: web.Request) -> web.Response:
    return web.Response(
        status=204,
        headers={
            "Accept-Post": SDP_TYPE,
            "Allow": "OPTIONS, POST, DELETE",
        },
    )


def routes() -> list[web.RouteDef]:
    return [
        web.post("/whep/{template}", post_offer),
        web.delete("/whep/{session_id}", delete_session),
        web.options("/whep/{template}", options),
    ]
