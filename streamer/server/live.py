"""The live audio WebSocket: PCM in (start, s16le chunks, end; repeat), session events out.

Text messages are capped at `max_json_bytes`, binary ones at `max_ws_bytes`; the socket
closes when its session closes (after the `closing` event, when there is one). A chunk that
cannot be taken (too large, past `max_audio_seconds`, past the session's buffer) ends the
stream there, with an `error` and an `ended` event: speech is cut short, never holed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from streamer.config import Settings
from streamer.core.events import Event, to_json
from streamer.core.livestream import LiveStream
from streamer.core.tasks import TaskSet
from streamer.errors import BadInput, NotReady, StreamerError, TooLarge
from streamer.server.state import Startup
from streamer.units import FPS
from streamer.webrtc.session import Session

PROTOCOL = "streamer-audio"
"""The subprotocol the server selects; a browser offers it beside `token.<session token>`."""
TOKEN_PREFIX = "token."


def protocol_token(header: str | None) -> str | None:
    """The session token a browser put in `Sec-WebSocket-Protocol` (`token.<token>`)."""
    for item in (header or "").split(","):
        item = item.strip()
        if item.startswith(TOKEN_PREFIX) and len(item) > len(TOKEN_PREFIX):
            return item[len(TOKEN_PREFIX) :]
    return None


class LiveSocket:
    def __init__(
        self, ws: web.WebSocketResponse, session: Session, settings: Settings, startup: Startup | None = None
    ) -> None:
        self.ws = ws
        self.startup = startup
        self.session = session
        self.settings = settings
        self.stream: LiveStream | None = None
        self._sends = TaskSet(f"audio-socket-{session.id}")

    def forward(self, event: Event) -> None:
        """A session event, sent as the JSON the data channel carries."""
        if not self.ws.closed:
            self._sends.spawn(self.ws.send_json(to_json(event, self.session.id)), name="send-event")

    async def run(self) -> None:
        self.session.listeners.add(self.forward)
        watcher = asyncio.ensure_future(self._close_with_session())
        try:
            async for msg in self.ws:
                try:
                    await self._handle(msg)
                except (json.JSONDecodeError, RecursionError):
                    await self.ws.send_json({"type": "error", "error": "text messages must be JSON"})
                except StreamerError as exc:
                    await self.ws.send_json({"type": "error", "error": str(exc), "status": exc.status})
        finally:
            watcher.cancel()
            self.session.listeners.discard(self.forward)
            await self._sends.close()
            if self.stream is not None and not self.session.closed.is_set():
                self.stream.end()  # keep what was sent

    async def _close_with_session(self) -> None:
        await self.session.closed.wait()
        await self._sends.drain(timeout_s=2)  # the `closing` event first
        with contextlib.suppress(ConnectionError):
            await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"the session has closed")

    async def _handle(self, msg: Any) -> None:
        if msg.type == WSMsgType.TEXT:
            if len(msg.data) > self.settings.max_json_bytes:
                raise TooLarge(f"text messages are at most {self.settings.max_json_bytes} bytes")
            command = json.loads(msg.data)
            await self._command(command.get("type") if isinstance(command, dict) else None, command)
        elif msg.type == WSMsgType.BINARY:
            await self._audio(msg.data)

    async def _audio(self, data: bytes) -> None:
        stream = self.stream
        if stream is None:
            if len(data) > self.settings.max_ws_bytes:
                raise TooLarge(f"audio chunks are at most {self.settings.max_ws_bytes} bytes")
            raise BadInput("send start before audio")
        if stream.ended:
            stream.push(data)  # refused: the stream ended before this chunk (interrupt, idle, a cut)
        try:
            if len(data) > self.settings.max_ws_bytes:
                stream.refuse(TooLarge(f"audio chunks are at most {self.settings.max_ws_bytes} bytes"))
            stream.push(data)
        except StreamerError as exc:
            if not stream.ended or self.stream is not stream:
                raise
            self.stream = None  # ended here by the refused chunk: say so, and how much will play
            seconds = (stream.utterance.total_units or 0) / FPS
            message = f"{exc}; the stream was ended at {seconds:.2f} s"
            await self.ws.send_json({"type": "error", "error": message, "status": exc.status})
            await self.ws.send_json({"type": "ended", "utterance_id": stream.utterance_id, "duration_s": seconds})

    async def _command(self, kind: object, command: Any) -> None:
        if kind == "start":  # a second one while a stream is open: 429 from the conversation
            if self.startup is not None and self.startup.draining:
                raise NotReady("the server is shutting down: it takes no more speech")
            self.stream = self.session.conversation.open_stream(command.get("sample_rate"))
            await self.ws.send_json({"type": "started", "utterance_id": self.stream.utterance_id})
        elif kind == "end":
            if self.stream is None or self.stream.dropped:
                raise BadInput("no stream is open")
            stream, self.stream = self.stream, None
            seconds = stream.end()
            await self.ws.send_json({"type": "ended", "utterance_id": stream.utterance_id, "duration_s": seconds})
        elif kind == "interrupt":
            self.session.interrupt()  # a reply being written stops too
            self.stream = None
        else:
            raise BadInput("messages are start, end or interrupt")
