"""Who may do what, per request.

Opening a session takes the server key, a grant (`Authorization: Bearer <grant>`), or
nothing on a keyless (loopback-only) server. A session's resource takes its token, the
server key, or the grant that opened it (a WHEP player knows only the bearer it posted with).
"""

from __future__ import annotations

from aiohttp import web

from streamer.errors import NotReady, Unauthorized
from streamer.server.auth import bearer_matches, bearer_token
from streamer.server.grants import Grant
from streamer.server.keys import GRANTS, SESSIONS, SETTINGS, STARTUP
from streamer.webrtc.session import Session


def bearer(request: web.Request) -> str | None:
    return bearer_token(request.headers.get("Authorization"))


def has_key(request: web.Request) -> bool:
    return bearer_matches(request.headers.get("Authorization"), request.app[SETTINGS].key)


async def authorize_open(request: web.Request) -> Grant | None:
    """Before any body is read: None when the caller may open any session; else its grant,
    verified and not used yet (it is used up once the session is open: server/lifetime.py)."""
    if request.app[STARTUP].draining:
        raise NotReady("the server is shutting down: try another one (or again shortly)")
    if request.app[SETTINGS].key is None or has_key(request):
        return None
    token = bearer(request)
    if token is None:
        raise Unauthorized("this server needs a grant (or its key) to open sessions: Authorization: Bearer <grant>")
    return await request.app[GRANTS].unused(token)


def authorize_session(request: web.Request, session_id: str) -> Session:
    """The session, for its token, the server key, or the grant that opened it."""
    return request.app[SESSIONS].authorize(session_id, request.headers.get("Authorization"))
