"""Opening a session for a request (its grant kept in the session's record), counting its
uploads, and closing a session with a reason."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from aiohttp import web

from streamer.core.events import Closing
from streamer.errors import NotReady, StreamerError, Unauthorized
from streamer.server.decoding import DecoderCrashed, DecodeTimeout
from streamer.server.grants import Grant
from streamer.server.guard import bearer
from streamer.server.http import FORWARDED_CLIENT
from streamer.server.keys import GRANTS, SESSIONS, SETTINGS, STARTUP
from streamer.server.limits import check_uploads
from streamer.server.sessions import Opened, SessionManager

log = logging.getLogger(__name__)


async def open_session(request: web.Request, template_id: object, sdp: object, grant: Grant | None) -> Opened:
    """Open a session for this request's client, within its grant's limits, and keep the grant.

    The grant is used up only once the session is open: a bad offer, an unknown template or a
    429 leaves it usable. Two requests racing with one grant both negotiate; one wins the
    store's atomic claim, the other's session is closed again (401)."""
    app = request.app
    sessions = app[SESSIONS]
    if grant is not None:
        if not isinstance(template_id, str):
            raise Unauthorized("a grant opens a session on a named template")
        app[GRANTS].check(grant, template_id)
    limit = grant.max_session_s if grant is not None else None
    client, forwarded = request.remote, request.get(FORWARDED_CLIENT, False)
    opened = await sessions.open(template_id, sdp, client=client, max_session_s=limit, from_proxy=forwarded)
    if grant is not None:
        try:
            await app[GRANTS].use(grant)
        except StreamerError:
            await sessions.close(opened.session_id)
            raise
        sessions.held(opened.session_id).grant_token = bearer(request)
    return opened


@contextlib.contextmanager
def upload(request: web.Request, session_id: str) -> Iterator[None]:
    """Count an upload (speak, say) of a session while it decodes: 429 past the limit, 503 while
    draining, 403 once its uploads have crashed decoders `CRASHES_ALLOWED` times."""
    if request.app[STARTUP].draining:
        raise NotReady("the server is shutting down: it takes no more speech")
    entry = request.app[SESSIONS].held(session_id)
    check_uploads(request.app[SETTINGS], entry.uploads, entry.crashes)
    entry.uploads += 1
    try:
        yield
    except (DecoderCrashed, DecodeTimeout):
        entry.crashes += 1
        log.warning("session %s: an upload crashed or stalled the decoder (%d so far)", session_id, entry.crashes)
        raise
    finally:
        entry.uploads -= 1


async def close_with_reason(sessions: SessionManager, session_id: str, reason: str, message: str) -> None:
    """Tell the viewer why (a `closing` event), then close the session; `message` goes to the log."""
    held = sessions.open_sessions.get(session_id)
    if held is None:
        return
    held.session.emit(Closing(reason))
    log.info("session %s closing (%s): %s", session_id, reason, message)
    await sessions.close(session_id)
