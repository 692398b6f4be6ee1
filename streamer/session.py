"""One viewer: its peer connection, playout, speech queue, interrupts and events."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

from streamer import audio
from streamer.avatar.prepared import PreparedTemplate
from streamer.avatar.sources import check_id
from streamer.config import Settings
from streamer.errors import BadInput, Busy, NotFound, NotReady, StreamerError, Unauthorized
from streamer.media import encoding, segmenter
from streamer.media.clock import Clock, MonotonicClock
from streamer.media.buffer import Samples
from streamer.media.compositor import compose_i420
from streamer.media.ladder import Ladder
from streamer.media.link import LinkMonitor
from streamer.media.playout import Playout, Unit, Utterance, Window
from streamer.media.tracks import MediaPump
from streamer.memory import release_free_memory
from streamer.metrics import Metrics
from streamer.pool.base import RenderPool
from streamer.render.base import RenderJob
from streamer.units import MODEL_RATE, MODEL_SAMPLES_PER_UNIT, OUT_RATE

log = logging.getLogger(__name__)

CHUNK_UNITS = 750
"""Whisper encodes 30 s windows (750 units); a job's audio starts one such window before its own."""
CONNECT_TIMEOUT_S = 30.0
LOW_WATER_UNITS = 4
"""A playing stream with fewer rendered-or-cut units than this ahead gets a window cut now."""


def bearer_matches(authorization: str | None, secret: str | None) -> bool:
    """`Authorization: Bearer <secret>`, compared in constant time (any input, no exception)."""
    scheme, _, credential = (authorization or "").partition(" ")
    if not secret or scheme.lower() != "bearer" or not credential:
        return False
    return hmac.compare_digest(credential.strip().encode(), secret.encode())


@dataclass(frozen=True)
class Opened:
    session_id: str
    token: str
    sdp: str
    type: str = "answer"


def job_audio(audio16k: np.ndarray, first_unit: int, units: int, final: bool) -> tuple[np.ndarray, int]:
    """The audio a window's job carries and its first unit within it.

    Features are computed per 30 s whisper window, so audio from the start of the window before
    the job's own up to the end of the window holding its last unit (+ look-ahead) gives the
    same features as the whole utterance, without sending minutes of audio with every job.
    """
    chunk = CHUNK_UNITS * MODEL_SAMPLES_PER_UNIT
    start_chunk = max(0, first_unit // CHUNK_UNITS - 1)
    start = start_chunk * chunk
    end = len(audio16k)
    if final:
        last = (first_unit + units + 2) * MODEL_SAMPLES_PER_UNIT
        end = min(end, -(-last // chunk) * chunk)
    return audio16k[start:end], first_unit - start_chunk * CHUNK_UNITS


class Speech:
    """The audio of one utterance as it arrives, paired at both rates, and its render windows."""

    def __init__(self, utterance: Utterance, cutter: segmenter.Segmenter) -> None:
        self.utterance = utterance
        self.cutter = cutter
        self._audio16k = Samples(np.float32)
        self.created = time.monotonic()
        self.first_audio_at: float | None = None
        self.windows_ready = asyncio.Event()

    @property
    def audio16k(self) -> np.ndarray:
        return self._audio16k.view

    def add(self, audio16k: np.ndarray, audio48k: np.ndarray) -> list[segmenter.Window]:
        if len(audio48k):
            self.utterance.add_audio(audio.to_int16(audio48k))
        if not len(audio16k):
            return []
        if self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
        self._audio16k.append(audio16k)
        return self._add_windows(self.cutter.push(audio16k))

    def cut_available(self) -> list[segmenter.Window]:
        return self._add_windows(self.cutter.cut_available())

    def finish(self) -> list[segmenter.Window]:
        windows = self._add_windows(self.cutter.finish())
        self._audio16k.pad_to(self.utterance.known_units * MODEL_SAMPLES_PER_UNIT)
        self.utterance.end()
        return windows

    def _add_windows(self, windows: list[segmenter.Window]) -> list[segmenter.Window]:
        for w in windows:
            self.utterance.add_window(Window(w.first_unit, w.units))
        if windows:
            self.windows_ready.set()
        return windows


class AudioStream:
    """A live PCM stream into a session (the WebSocket): s16le chunks in, one utterance out."""

    def __init__(self, session: "Session", speech: Speech, sample_rate: int) -> None:
        self._session = session
        self._speech = speech
        self._pcm = audio.PcmStream(sample_rate, (MODEL_RATE, OUT_RATE))
        self.utterance_id = speech.utterance.id
        self.seconds = 0.0

    def push(self, chunk: bytes) -> None:
        out = self._pcm.push(chunk)
        self.seconds += len(out[MODEL_RATE]) / MODEL_RATE
        if self.seconds > self._session.settings.max_audio_seconds:
            raise BadInput(f"stream longer than {self._session.settings.max_audio_seconds:.0f} s")
        self._speech.add(out[MODEL_RATE], out[OUT_RATE])
        utterance = self._speech.utterance
        if (
            self._session.playout.current is utterance
            and utterance.played > 0
            and utterance.known_units - utterance.played < LOW_WATER_UNITS
        ):
            self._speech.cut_available()

    def end(self) -> float:
        out = self._pcm.flush()
        self._speech.add(out[MODEL_RATE], out[OUT_RATE])
        self._speech.finish()
        return self._speech.utterance.known_units / 25.0


class Session:
    def __init__(
        self,
        template: PreparedTemplate,
        pool: RenderPool,
        settings: Settings,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.id = secrets.token_hex(8)
        self.token = secrets.token_urlsafe(24)
        self.template = template
        self.settings = settings
        self.created = time.time()
        self._pool = pool
        self._metrics = metrics
        self._clock = clock
        self.epoch = 0
        self.playout = Playout(self._on_playout_event)
        self.ladder = Ladder(settings.video_bitrate, adaptive=settings.adaptive_bitrate)
        self.pump = MediaPump(self.playout, self._compose, clock, self.ladder)
        self.link: LinkMonitor | None = None
        self.pump.on_unit = self._on_unit
        self.pc = RTCPeerConnection()
        self.channel: Any = None
        self.listeners: set[Callable[[dict[str, Any]], None]] = set()
        self._speech: dict[str, Speech] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._pending: asyncio.Queue[Speech] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = 0
        self.closed = asyncio.Event()
        self.closing = False
        self.render_failures = 0
        if template.welcome is not None and template.welcome.units:
            self.playout.enqueue(self._welcome_utterance(template))

    # --- setup ---------------------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        if not offer_sdp.lstrip().startswith("v=0"):
            raise BadInput("malformed SDP offer: it must start with v=0")
        offered = set(re.findall(r"^m=(audio|video) ", offer_sdp, re.MULTILINE))
        if "video" not in offered:
            raise BadInput("malformed SDP offer: it must have a video section to receive the stream")
        # Transceivers made before the offer is applied take it up, with our codec preference.
        video = self.pc.addTransceiver(self.pump.video, direction="sendonly")
        codecs = encoding.codec_preferences(self.settings.video_codec, self.settings.prefer_cheaper_codec)
        if codecs:
            video.setCodecPreferences(codecs)
        if "audio" in offered:
            self.pc.addTransceiver(self.pump.audio, direction="sendonly")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # noqa: BLE001 - aiortc raises many kinds on bad SDP
            raise BadInput(f"malformed SDP offer: {exc}") from None

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
        self.link = LinkMonitor(video.sender, self.ladder, lambda q: self._metrics.link_quality(self.id, asdict(q)))
        self._spawn(self.link.run())
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        return self.pc.localDescription.sdp

    def _welcome_utterance(self, template: PreparedTemplate) -> Utterance:
        clip = template.welcome
        assert clip is not None
        welcome = Utterance("welcome", self.epoch, kind="welcome")
        welcome.add_audio(clip.audio)
        welcome.add_window(Window(0, clip.units, clip.crops))
        welcome.end()
        welcome.base_position = int(clip.positions[0])
        return welcome

    # --- speech --------------------------------------------------------------------------

    def _new_speech(self) -> Speech:
        if self.closing:
            raise NotFound(f"session {self.id} has ended")
        if self.playout.queued_seconds > self.settings.max_queued_seconds:
            raise Busy(f"more than {self.settings.max_queued_seconds:.0f} s of speech queued")
        self._ids += 1
        utterance = Utterance(f"{self.id}-{self._ids}", self.epoch)
        speech = Speech(
            utterance, segmenter.Segmenter(self.settings.first_window_s, self.settings.window_s)
        )
        self._speech[utterance.id] = speech
        self.playout.enqueue(utterance)
        self._pending.put_nowait(speech)
        self._metrics.request()
        return speech

    def speak(self, audio16k: np.ndarray, audio48k: np.ndarray, arrived: float | None = None) -> Utterance:
        """Queue a whole utterance (an upload); its windows start rendering at once.

        `arrived`: `time.monotonic()` when the request came in, for the latency figures.
        """
        if len(audio16k) == 0:
            raise BadInput("the audio holds no samples")
        speech = self._new_speech()
        speech.first_audio_at = arrived
        speech.add(audio16k, audio48k)
        speech.finish()
        log.info("session %s: utterance %s queued (%.2f s)", self.id, speech.utterance.id, len(audio16k) / MODEL_RATE)
        return speech.utterance

    def open_stream(self, sample_rate: int) -> AudioStream:
        if not 8000 <= sample_rate <= 96000:
            raise BadInput(f"sample_rate must be between 8000 and 96000, got {sample_rate}")
        speech = self._new_speech()
        log.info("session %s: streamed utterance %s started", self.id, speech.utterance.id)
        return AudioStream(self, speech, sample_rate)

    def interrupt(self) -> list[dict[str, Any]]:
        self.epoch += 1
        events = self.playout.interrupt()
        for event in events:
            speech = self._speech.pop(str(event["utterance_id"]), None)
            if speech is not None:
                speech.windows_ready.set()  # wakes the dispatcher if it waits on this stream
        while not self._pending.empty():
            self._pending.get_nowait()
        log.info("session %s: interrupted (%d utterances dropped)", self.id, len(events))
        return events

    async def _dispatch(self) -> None:
        """Render each utterance's windows, utterances in order, windows as they are cut.

        An utterance is dispatched only after the one before it has ended, so its loop
        positions can follow on from it (`Playout.assign_base`).
        """
        in_flight = asyncio.Semaphore(len(self._pool.stats()) + 1)
        while True:
            speech = await self._pending.get()
            utterance = speech.utterance
            if utterance.epoch != self.epoch:
                continue  # dropped by an interrupt
            placed = self.playout.assign_base(utterance)
            assert placed, "utterances are dispatched in order, each after the one before ended"
            sent = 0
            while utterance.epoch == self.epoch:
                speech.windows_ready.clear()
                for window in utterance.windows[sent:]:
                    await in_flight.acquire()
                    if utterance.epoch != self.epoch:  # interrupted while waiting for a slot
                        in_flight.release()
                        break
                    self._spawn(self._render(speech, window, in_flight))
                    sent += 1
                if utterance.ended and sent == len(utterance.windows):
                    break
                if sent == len(utterance.windows):
                    await speech.windows_ready.wait()

    async def _render(self, speech: Speech, window: Window, in_flight: asyncio.Semaphore) -> None:
        utterance = speech.utterance
        try:
            assert utterance.base_position is not None
            clip, first = job_audio(speech.audio16k, window.first_unit, window.units, utterance.ended)
            job = RenderJob(
                template_id=self.template.id,
                positions=utterance.base_position + np.arange(window.first_unit, window.first_unit + window.units),
                audio=clip,
                first_unit=first,
                final=utterance.ended,
            )
            started = time.perf_counter()
            try:
                crops = await self._pool.render(job)
                if crops.shape[:1] != (window.units,):
                    raise StreamerError(f"{crops.shape[0]} crops for {window.units} frames")
            except Exception as exc:  # noqa: BLE001 - its audio still plays, over the still face
                self.render_failures += 1
                log.error("session %s: window %d of %s failed: %s", self.id, window.first_unit, utterance.id, exc)
                window.failed = True
                return
            self._metrics.render_seconds.observe(time.perf_counter() - started)
            if utterance.epoch == self.epoch:
                window.crops = crops
        finally:
            in_flight.release()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- playout -------------------------------------------------------------------------

    def _compose(self, unit: Unit) -> np.ndarray:
        return compose_i420(self.template, unit.position, unit.crop)

    def _on_unit(self, unit: Unit, due: float) -> None:
        self._metrics.units.labels(unit.kind).inc()

    def _on_playout_event(self, event: dict[str, Any]) -> None:
        uid = str(event.get("utterance_id"))
        speech = self._speech.get(uid)
        if event["type"] == "speaking_started" and speech is not None:
            arrived = speech.first_audio_at or speech.created
            self._metrics.first_speech_frame(time.monotonic() - arrived)
        elif event["type"] == "speaking_ended" and uid != "welcome":
            self._metrics.completed_request()
            self._speech.pop(uid, None)
        elif event["type"] == "interrupted" and uid != "welcome":
            self._metrics.interrupted_request()
        if uid == "welcome":
            if event["type"] == "speaking_ended":
                self.emit({"type": "welcome_ended"})
            return
        self.emit(event)

    def emit(self, event: dict[str, Any]) -> None:
        message = {**event, "session_id": self.id}
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(message))
        for listener in list(self.listeners):
            listener(message)

    def describe(self) -> dict[str, Any]:
        c = self.playout.counters
        return {
            "session_id": self.id,
            "template": self.template.id,
            "renderer": self._pool.renderer,
            "state": self.playout.state,
            "connection": self.pc.connectionState,
            "queued_seconds": round(self.playout.queued_seconds, 3),
            "utterances": self._ids,
            "units": c.ticks,
            "speech_units": c.speech_units,
            "stalls": c.stalls,
            "starved": c.starved,
            "render_failures": self.render_failures,
            "dropped_frames": self.pump.video.dropped,
            "link": self.link.describe() if self.link is not None else None,
            "created": self.created,
        }

    async def close(self) -> None:
        self.closing = True
        tasks = [t for t in (self._dispatcher, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.pump.stop()
            await self.pc.close()
        finally:
            self._metrics.link_closed(self.id)
            self.listeners.clear()
            self.closed.set()


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
        self.sessions: dict[str, Session] = {}
        self._opening = 0
        """Sessions being negotiated: they count against the limit before they are listed."""
        self._clock_factory = clock_factory
        self._watchers: set[asyncio.Task[None]] = set()

    def template(self, template_id: str) -> PreparedTemplate:
        check_id(template_id)
        if template_id not in self.templates:
            raise NotFound(f"unknown template {template_id!r}")
        return self.templates[template_id]

    async def open(self, template_id: str, sdp: str) -> Opened:
        if not isinstance(template_id, str) or not isinstance(sdp, str):
            raise BadInput("`template` and `sdp` must be strings")
        template = self.template(template_id)
        if len(self.sessions) + self._opening >= self.settings.max_sessions:
            raise Busy(f"the server holds its limit of {self.settings.max_sessions} sessions")
        if not self.pool.renderer:
            raise NotReady("render workers are starting")
        session = Session(template, self.pool, self.settings, self.metrics, self._clock_factory())
        self._opening += 1
        try:
            answer = await session.answer(sdp)
        except BaseException:
            await session.close()
            raise
        finally:
            self._opening -= 1
        self.sessions[session.id] = session
        self.metrics.session_opened(template_id)
        self.metrics.sessions.set(len(self.sessions))
        watcher = asyncio.get_running_loop().create_task(self._watch(session))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        log.info("session %s opened on %s", session.id, template_id)
        return Opened(session.id, session.token, answer)

    async def _watch(self, session: Session) -> None:
        """Close a session whose peer went away, or never connected."""
        try:
            await asyncio.wait_for(session.closed.wait(), CONNECT_TIMEOUT_S)
        except asyncio.TimeoutError:
            if session.pc.connectionState != "connected":
                log.info("session %s never connected", session.id)
                await self.close(session.id)
                return
            await session.closed.wait()
        await self.close(session.id)

    def get(self, session_id: str) -> Session:
        session = self.sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            raise NotFound(f"no session {session_id!r}")
        return session

    def authorize(self, session_id: str, authorization: str | None) -> Session:
        """The session, when `authorization` is `Bearer <its token or the server key>`."""
        session = self.get(session_id)
        if bearer_matches(authorization, session.token) or bearer_matches(authorization, self.settings.key):
            return session
        raise Unauthorized("this session needs its token (Authorization: Bearer <token>)")

    async def close(self, session_id: str) -> None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        await session.close()
        self.metrics.sessions.set(len(self.sessions))
        log.info("session %s closed", session_id)
        await asyncio.get_running_loop().run_in_executor(None, release_free_memory)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(sid) for sid in list(self.sessions)))
