"""Graceful drain (SIGTERM, Ctrl-C): stop admitting, let speech finish, say `closing`, close.

`/readyz` answers 503 `draining` from the first moment, so a load balancer stops sending new
viewers; utterances already playing (and those queued behind them) get up to `drain_s` to
finish; then every session gets a `closing` event with reason `draining` and is closed.
The workers stop in the app's cleanup.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from streamer.server.keys import SESSIONS, SETTINGS, STARTUP
from streamer.server.lifetime import close_with_reason

log = logging.getLogger(__name__)

POLL_S = 0.1


def speaking(app: web.Application) -> int:
    """Sessions with speech playing or queued (`Conversation.speaking`)."""
    return sum(1 for session in app[SESSIONS].sessions.values() if session.conversation.speaking)


async def drain(app: web.Application) -> None:
    state, sessions = app[STARTUP], app[SESSIONS]
    state.draining = True
    limit = app[SETTINGS].drain_s
    log.info("draining: %d sessions, %d speaking; waiting up to %.0f s", len(sessions.sessions), speaking(app), limit)
    deadline = time.monotonic() + limit
    while speaking(app) and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
    left = speaking(app)
    if left:
        log.warning("drain: %d sessions still speaking after %.0f s; closing them", left, limit)
    await asyncio.gather(
        *(
            close_with_reason(sessions, sid, "draining", "the server is shutting down")
            for sid in list(sessions.sessions)
        )
    )
    log.info("drained")
