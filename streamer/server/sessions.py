"""The open sessions: opening within the limits, finding one by id and token, closing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from streamer.avatar.prepared import PreparedTemplate
from streamer.avatar.sources import check_id
from streamer.config import Settings
from streamer.core.clock import Clock, MonotonicClock
from streamer.core.events import Closing
from streamer.core.tasks import TaskSet
from streamer.errors import BadInput, Busy, NotFound, NotReady, Unauthorized
from streamer.memory import release_free_memory
from streamer.metrics import Metrics
from streamer.pool.base import RenderPool
from streamer.pool.front.admission import Decision, Load, admit, decide
from streamer.reply.services import ReplyServices
from streamer.server.auth import bearer_matches
from streamer.server.limits import check_client, limit_reached
from streamer.voice.services import VoiceServices
from streamer.webrtc.session import Session

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
WATCH_S = 1.0
"""How often a session's limits (length, idle) are looked at."""


@dataclass(frozen=True)
class Opened:
    session_id: str
    token: str
    sdp: str
    type: str = "answer"


@dataclass
class OpenSession:
    """Everything the server holds for one open session: dropped whole when it closes."""

    session: Session
    client: str | None
    """The client address that opened it (for `max_sessions_per_client`); None when unknown."""
    ends_at: float
    """The monotonic time its longest life ends (TURN credentials last no longer)."""
    grant_token: str | None = None
    """The grant that opened it: its bearer may control the session (a WHEP player's resource)."""
    uploads: int = 0
    """Uploads (speak, say) being decoded now."""
    crashes: int = 0
    """Uploads of this session that crashed a decoder (or ran past the decode time limit)."""
    sockets: int = 0
    """Audio WebSockets open now."""


class SessionManager:
    """Open sessions and the templates they may use."""

    def __init__(
        self,
        settings: Settings,
        pool: RenderPool,
        metrics: Metrics,
        clock_factory: Callable[[], Clock] = MonotonicClock,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.metrics = metrics
        self.templates: dict[str, PreparedTemplate] = {}
        self.open_sessions: dict[str, OpenSession] = {}
        """The one table of open sessions, by id."""
        self._opening = 0
        """Sessions being negotiated: they count against the limit before they are listed."""
        self._clock_factory = clock_factory
        self._watchers = TaskSet("sessions")
        self.refusals = 0
        """Sessions refused because the render devices were at capacity."""
        pool.watch_load(self.own_load)
        self.replies = ReplyServices(settings)
        """The reply engine's shared parts (one HTTP pool to the LLM and TTS servers)."""
        self.voice = VoiceServices(settings)
        """Listening (VAD threads, the speech recognizer) shared by every session's microphone."""

    @property
    def sessions(self) -> dict[str, Session]:
        """The open sessions by id (a snapshot of the table)."""
        return {sid: held.session for sid, held in self.open_sessions.items()}

    def template(self, template_id: str) -> PreparedTemplate:
        check_id(template_id)
        if template_id not in self.templates:
            raise NotFound(f"unknown template {template_id!r}")
        return self.templates[template_id]

    async def open(
        self,
        template_id: object,
        sdp: object,
        client: str | None = None,
        max_session_s: float | None = None,
        from_proxy: bool = False,
    ) -> Opened:
        """A new session; `client` (its address, `from_proxy` when a forwarding header named it)
        counts against `max_sessions_per_client`, and `max_session_s` (a grant's) may only
        shorten the server's `max_session_s`."""
        if not isinstance(template_id, str) or not isinstance(sdp, str):
            raise BadInput("`template` and `sdp` must be strings")
        template = self.template(template_id)
        if len(self.open_sessions) + self._opening >= self.settings.max_sessions:
            raise Busy(f"the server holds its limit of {self.settings.max_sessions} sessions")
        clients = [held.client for held in self.open_sessions.values() if held.client is not None]
        check_client(self.settings, client, clients, from_proxy)
        if not self.pool.renderer:
            raise NotReady("render workers are starting")
        try:
            load = self.own_load() + await self.pool.reserve(self.own_load())
            admit(self.pool.capacity(), load, self.settings.admission_threshold, self.settings.speaking_share)
        except Busy:
            self.refusals += 1
            log.warning("session refused: the render devices are at capacity (%d open)", len(self.open_sessions))
            raise
        clock = self._clock_factory()
        session = Session(template, self.pool, self.settings, self.metrics, clock, self.replies, self.voice)
        self._opening += 1
        try:
            answer = await session.answer(sdp)
        except BaseException:
            await session.close()
            raise
        finally:
            self._opening -= 1
        longest = min(self.settings.max_session_s, max_session_s or self.settings.max_session_s)
        self.open_sessions[session.id] = OpenSession(session, client, time.monotonic() + longest)
        self.metrics.session_opened(template_id)
        self.metrics.sessions.set(len(self.open_sessions))
        self._watchers.spawn(self._watch(session, longest), name=f"watch-{session.id}")
        log.info("session %s opened on %s", session.id, template_id)
        return Opened(session.id, session.token, answer)

    async def _watch(self, session: Session, longest_s: float) -> None:
        """Close a session whose peer went away or never connected, or that reached a limit
        (its maximum length, or no speech for `idle_timeout_s`): those get `closing` first."""
        clock = session.conversation.clock
        opened = clock.now()
        connected = False
        while not session.closed.is_set():
            now = clock.now()
            connected = connected or session.pc.connectionState == "connected"
            if not connected and now - opened > CONNECT_TIMEOUT_S:
                log.info("session %s never connected", session.id)
                break
            reason = limit_reached(self.settings, now - opened, longest_s, now - session.conversation.active_at)
            if reason is not None:
                log.info("session %s closing: %s", session.id, reason)
                session.emit(Closing(reason))
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(session.closed.wait(), WATCH_S)
        await self.close(session.id)

    def own_load(self) -> Load:
        """Open sessions (those being opened included) and how many speak now."""
        speaking = sum(1 for held in self.open_sessions.values() if held.session.conversation.speaking)
        return Load(len(self.open_sessions) + self._opening, speaking)

    def load(self) -> Load:
        """This server's load and that of the others sharing its render workers."""
        return self.own_load() + self.pool.others()

    def admission(self) -> Decision:
        """Whether a session opened now would be admitted, and the figures behind it."""
        return decide(
            self.pool.capacity(), self.load(), self.settings.admission_threshold, self.settings.speaking_share
        )

    def remaining_s(self, session_id: str) -> float:
        """How much longer the session may last (0 for one that is not open)."""
        held = self.open_sessions.get(session_id)
        return 0.0 if held is None else max(0.0, held.ends_at - time.monotonic())

    def held(self, session_id: object) -> OpenSession:
        """What the server holds for an open session; NotFound once it has closed."""
        held = self.open_sessions.get(session_id) if isinstance(session_id, str) else None
        if held is None:
            raise NotFound(f"no session {session_id!r}")
        return held

    def get(self, session_id: object) -> Session:
        return self.held(session_id).session

    def authorize(self, session_id: object, authorization: str | None) -> Session:
        """The session, when `authorization` is `Bearer <its token, the server key, or the grant
        that opened it>` (a WHEP player knows only the bearer it posted with)."""
        held = self.held(session_id)
        allowed = (held.session.token, self.settings.key, held.grant_token)
        if any(bearer_matches(authorization, secret) for secret in allowed):
            return held.session
        raise Unauthorized("this session needs its token (Authorization: Bearer <token>)")

    async def close(self, session_id: str) -> None:
        held = self.open_sessions.pop(session_id, None)
        if held is None:
            return
        session = held.session
        await session.close()
        self.metrics.sessions.set(len(self.open_sessions))
        log.info("session %s closed", session_id)
        await asyncio.get_running_loop().run_in_executor(None, release_free_memory)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(sid) for sid in list(self.open_sessions)))
        await self._watchers.close()
        await self.replies.close()
        await self.voice.close()
