"""Who may open a session (the server key, a grant, or anyone on a keyless loopback server);
what the server keeps of it: the grant that opened it (valid for its resource), its deadline."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from streamer.errors import Unauthorized
from streamer.server.grants import Grant
from streamer.server.keys import GRANTS, HOLDERS, SESSIONS, SETTINGS
from streamer.server.state import Held
from streamer.session import Session, SessionManager, bearer_matches

log = logging.getLogger(__name__)


def bearer(request: web.Request) -> str | None:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    return credential.strip() or None if scheme.lower() == "bearer" else None


def has_key(request: web.Request) -> bool:
    return bearer_matches(request.headers.get("Authorization"), request.app[SETTINGS].key)


def authorize_open(request: web.Request, template_id: object) -> Grant | None:
    """None when the caller may open any session; the redeemed grant when it came with one."""
    if request.app[SETTINGS].key is None or has_key(request):
        return None
    token = bearer(request)
    if token is None:
        raise Unauthorized(
            "this server needs a grant (or its key) to open sessions: Authorization: Bearer <grant>"
        )
    if not isinstance(template_id, str):
        raise Unauthorized("a grant opens a session on a named template")
    return request.app[GRANTS].redeem(token, template_id)


def opened_with(request: web.Request, session_id: str, grant: Grant | None) -> None:
    """Keep the grant a session was opened with, and close the session at its maximum length."""
    app = request.app
    held = app[HOLDERS]
    for gone in [sid for sid in held if sid not in app[SESSIONS].sessions]:
        if held[gone].deadline is not None:
            held[gone].deadline.cancel()
        del held[gone]
    limit = app[SETTINGS].max_session_s
    if grant is not None and grant.max_session_s is not None:
        limit = min(limit, grant.max_session_s)
    entry = Held(grant_token=bearer(request) if grant is not None else None)
    entry.deadline = asyncio.get_running_loop().call_later(limit, _expire, app, session_id, entry)
    held[session_id] = entry


def _expire(app: web.Application, session_id: str, entry: Held) -> None:
    entry.closer = asyncio.ensure_future(
        close_with_reason(app[SESSIONS], session_id, "max_session_s", "the session reached its maximum length")
    )


async def close_with_reason(sessions: SessionManager, session_id: str, reason: str, message: str) -> None:
    """Tell the viewer why (a `closing` event), then close the session."""
    session = sessions.sessions.get(session_id)
    if session is None:
        return
    session.emit({"type": "closing", "reason": reason, "message": message})
    log.info("session %s closing: %s", session_id, reason)
    await sessions.close(session_id)


def authorize_session(request: web.Request, session_id: str) -> Session:
    """The session, for its token, the server key, or the grant that opened it."""
    sessions = request.app[SESSIONS]
    try:
        return sessions.authorize(session_id, request.headers.get("Authorization"))
    except Unauthorized:
        held = request.app[HOLDERS].get(session_id)
        if held is not None and bearer_matches(request.headers.get("Authorization"), held.grant_token):
            return sessions.get(session_id)
        raise
