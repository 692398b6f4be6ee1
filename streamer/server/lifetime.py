"""What the server keeps of an open session beyond the registry (the grant that opened it,
its uploads in flight), and closing a session with a reason."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from aiohttp import web

from streamer.events import Closing
from streamer.server.grants import Grant
from streamer.server.guard import bearer
from streamer.server.keys import HOLDERS, SESSIONS, SETTINGS
from streamer.server.limits import check_uploads
from streamer.server.sessions import Opened, SessionManager
from streamer.server.state import Held

log = logging.getLogger(__name__)


async def open_session(request: web.Request, template_id: object, sdp: object, grant: Grant | None) -> Opened:
    """Open a session for this request's client, within its grant's limits, and keep the grant."""
    app = request.app
    sessions = app[SESSIONS]
    limit = grant.max_session_s if grant is not None else None
    opened = await sessions.open(template_id, sdp, client=request.remote, max_session_s=limit)
    held = app[HOLDERS]
    for gone in [sid for sid in held if sid not in sessions.sessions]:
        del held[gone]
    held[opened.session_id] = Held(grant_token=bearer(request) if grant is not None else None)
    return opened


@contextlib.contextmanager
def upload(request: web.Request, session_id: str) -> Iterator[None]:
    """Count an upload (speak, say) of a session while it decodes; 429 past the limit."""
    entry = request.app[HOLDERS].setdefault(session_id, Held())
    check_uploads(request.app[SETTINGS], entry.uploads)
    entry.uploads += 1
    try:
        yield
    finally:
        entry.uploads -= 1


async def close_with_reason(sessions: SessionManager, session_id: str, reason: str, message: str) -> None:
    """Tell the viewer why (a `closing` event), then close the session; `message` goes to the log."""
    session = sessions.sessions.get(session_id)
    if session is None:
        return
    session.emit(Closing(reason))
    log.info("session %s closing (%s): %s", session_id, reason, message)
    await sessions.close(session_id)
