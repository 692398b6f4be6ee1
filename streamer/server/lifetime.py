"""What the server keeps of an open session beyond the registry: the grant that opened it
(valid for its resource) and its deadline; closing a session with a reason."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from streamer.events import Closing
from streamer.server.grants import Grant
from streamer.server.guard import bearer
from streamer.server.keys import HOLDERS, SESSIONS, SETTINGS
from streamer.server.sessions import SessionManager
from streamer.server.state import Held

log = logging.getLogger(__name__)


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
        close_with_reason(app[SESSIONS], session_id, "limit", "the session reached its maximum length")
    )


async def close_with_reason(sessions: SessionManager, session_id: str, reason: str, message: str) -> None:
    """Tell the viewer why (a `closing` event), then close the session; `message` goes to the log."""
    session = sessions.sessions.get(session_id)
    if session is None:
        return
    session.emit(Closing(reason))
    log.info("session %s closing (%s): %s", session_id, reason, message)
    await sessions.close(session_id)
