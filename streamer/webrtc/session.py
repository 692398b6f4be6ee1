"""One viewer's transport: its peer connection, codecs, media pump and events data channel.

The speech itself (queue, windows, playout, interrupts) is the conversation core's; the
session feeds the core's units to the aiortc tracks and its events to the viewer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription, sdp

from streamer import ice
from streamer.avatar.prepared import PreparedTemplate
from streamer.config import Settings
from streamer.core.clock import Clock
from streamer.core.conversation import Conversation
from streamer.core.events import Closing, Event, Failed, Interrupted, to_json
from streamer.core.playout import Unit
from streamer.errors import BadInput
from streamer.metrics import Metrics
from streamer.pool.base import RenderPool
from streamer.reply.engine import Replier
from streamer.reply.services import ReplyServices
from streamer.video.compositor import compose_i420
from streamer.voice.services import VoiceServices
from streamer.webrtc import encoding
from streamer.webrtc.ladder import Ladder
from streamer.webrtc.link import LinkController, LinkQuality
from streamer.webrtc.mic import Microphone, audio_direction, hold_less
from streamer.webrtc.tracks import MediaPump

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]


def rtc_configuration(settings: Settings, name: str) -> RTCConfiguration:
    """The configured ICE servers only (none by default: aiortc's own default is a public STUN)."""
    servers = ice.peer_servers(ice.servers_for(settings.ice_servers, settings.turn_secret, settings.turn_ttl_s, name))
    return RTCConfiguration(
        iceServers=[RTCIceServer(urls=s.url, username=s.username, credential=s.credential) for s in servers]
    )


def _parse_offer(offer_sdp: str) -> sdp.SessionDescription:
    """The offer parsed, or a 400: aiortc's parser asserts on some malformed lines."""
    try:
        return sdp.SessionDescription.parse(offer_sdp)
    except Exception as exc:  # noqa: BLE001 - aiortc raises many kinds on bad SDP
        log.info("the offer was refused by the SDP parser: %r", exc)  # not for the client
        raise BadInput("malformed SDP offer: it could not be parsed as a WebRTC offer") from None


def _check_directions(offer: sdp.SessionDescription) -> None:
    """aiortc parses an offer whose media section has no (or a garbled) direction, then fails
    to answer it: refuse it here, as the bad input it is."""
    for media in offer.media:
        if media.kind in ("audio", "video") and media.direction is None:
            raise BadInput(f"malformed SDP offer: its {media.kind} section has no direction (a=recvonly)")


class Session:
    def __init__(
        self,
        template: PreparedTemplate,
        pool: RenderPool,
        settings: Settings,
        metrics: Metrics,
        clock: Clock,
        replies: ReplyServices | None = None,
        voice: VoiceServices | None = None,
    ) -> None:
        """`replies`: the server's reply engine services; with `llm_url` set the session answers `/chat`.
        `voice`: the server's listening services; without them a microphone is not heard."""
        self.id = secrets.token_hex(8)
        self.token = secrets.token_urlsafe(24)
        self.template = template
        self.settings = settings
        self.created = time.time()
        self._metrics = metrics
        self.conversation = Conversation(
            self.id, template, pool, settings, clock, metrics, self.emit, on_failure=self._task_failed
        )
        self.replier: Replier | None = None
        if replies is not None and replies.available:
            self.replier = Replier(self.conversation, replies, self.emit, replies.persona(template.id))
        self.ladder = Ladder(settings.video_bitrate, adaptive=settings.adaptive_bitrate)
        self.pump = MediaPump(self.conversation.tick, self._compose, clock, on_failure=self._task_failed)
        self.link: LinkController | None = None
        self._link_task: asyncio.Task[None] | None = None
        self.pc = RTCPeerConnection(rtc_configuration(settings, self.id))
        self.channel: Any = None
        self.listeners: set[Listener] = set()
        """Called with each event, after the data channel (the audio WebSocket forwards them)."""
        self.closed = asyncio.Event()
        self.mic = Microphone(self.conversation, voice, self.emit, lambda: self.replier) if voice else None

    async def answer(self, offer_sdp: str) -> str:
        if not offer_sdp.lstrip().startswith("v=0"):
            raise BadInput("malformed SDP offer: it must start with v=0")
        offered = set(re.findall(r"^m=(audio|video) ", offer_sdp, re.MULTILINE))
        if "video" not in offered:
            raise BadInput("malformed SDP offer: it must have a video section to receive the stream")
        offer = _parse_offer(offer_sdp)
        # Transceivers made before the offer is applied take it up, with our codec preference.
        video = self.pc.addTransceiver(self.pump.video, direction="sendonly")
        codecs = encoding.codec_preferences(self.settings.video_codec, self.settings.prefer_cheaper_codec)
        if codecs:
            video.setCodecPreferences(codecs)
        if "audio" in offered:
            audio = self.pc.addTransceiver(self.pump.audio, direction=audio_direction(offer))
            if self.mic is not None:
                hold_less(audio.receiver)

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio" and self.mic is not None:
                self.mic.attach(track)

        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # noqa: BLE001 - aiortc raises many kinds on bad SDP
            log.info("session %s: the offer was refused by the SDP parser: %r", self.id, exc)  # not for the client
            raise BadInput("malformed SDP offer: it could not be parsed as a WebRTC offer") from None
        _check_directions(offer)

        @self.pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            if channel.label == "events":
                self.channel = channel

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("session %s: connection %s", self.id, self.pc.connectionState)
            if self.pc.connectionState in ("failed", "closed"):
                self.closed.set()

        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        encoding.attach(self.pc, encoding.encoder_settings(self.settings), self.ladder)
        if encoding.sends_opus(self.pc.localDescription.sdp):
            self.pump.encode_audio()
        self.link = LinkController(video.sender, self.ladder, self._on_link)
        self._link_task = asyncio.get_running_loop().create_task(self.link.run(), name="link-control")
        self.conversation.start()
        return str(self.pc.localDescription.sdp)

    def _on_link(self, quality: LinkQuality) -> None:
        self._metrics.link_quality(self.id, asdict(quality))

    def _compose(self, unit: Unit) -> np.ndarray:
        return compose_i420(self.template, unit.position, unit.crop)

    def emit(self, event: Event) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(to_json(event, self.id)))
        for listener in list(self.listeners):
            listener(event)
        if self.replier is not None:  # after: speaking_started before turn_timing, and so on
            self.replier.observe(event)

    def _task_failed(self, name: str, exc: BaseException) -> None:
        """A background task died: count it, tell the viewer, end the session (no frozen stream)."""
        task = name.rsplit(":", 1)[-1]  # dispatcher, render-<utterance>@<unit>, media-pump
        kind = "render" if task.startswith("render-") else task
        self._metrics.task_failures.labels(kind).inc()
        log.error("session %s: %s died (%s); closing the session", self.id, name, type(exc).__name__)
        self.emit(Failed(f"the session's {kind} stopped; it is closed"))
        self.emit(Closing("error"))
        self.closed.set()

    def interrupt(self) -> list[Interrupted]:
        """Stop all speech, and the reply being written and spoken (its LLM stream closed)."""
        if self.replier is not None:
            return self.replier.interrupt_all()
        return self.conversation.interrupt()

    def describe(self) -> dict[str, Any]:
        return {
            **self.conversation.describe(),
            "chat": self.replier is not None,
            "replying": self.replier is not None and self.replier.replying,
            "connection": self.pc.connectionState,
            "dropped_frames": self.pump.video.dropped,
            "link": self.link.describe() if self.link is not None else None,
            "created": self.created,
        }

    async def close(self) -> None:
        try:
            if self._link_task is not None:
                self._link_task.cancel()
                await asyncio.gather(self._link_task, return_exceptions=True)
            if self.mic is not None:
                await self.mic.close()
            if self.replier is not None:
                await self.replier.close()
            await self.conversation.close()
            await self.pump.stop()
            await self.pc.close()
        finally:
            self._metrics.link_closed(self.id)
            self.listeners.clear()
            self.closed.set()
