"""The speech engine of one viewer, with no transport.

It owns the utterance queue and the epoch, cuts windows as audio arrives, sends them to the
render pool ahead of playout, plays one unit per `tick`, and reports what happens as typed
events. It knows nothing of aiortc, aiohttp or HTTP auth: the session (the transport) calls
`tick` from its media pump and forwards the events; unit tests drive it with a fake clock and
a fake pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from streamer import audio
from streamer.avatar.prepared import PreparedTemplate
from streamer.core.clock import Clock
from streamer.core.events import Event, Interrupted, SpeakingEnded, SpeakingStarted, WelcomeEnded
from streamer.core.livestream import LiveStream
from streamer.core.playout import Playout, Unit
from streamer.core.segmenter import Segmenter, Window
from streamer.core.tasks import TaskSet
from streamer.core.utterance import WELCOME, Utterance, welcome_utterance
from streamer.errors import BadInput, Busy, Cancelled, NotFound, StreamerError
from streamer.metrics import Metrics
from streamer.pool.base import RenderPool
from streamer.render.base import RenderJob, job_audio
from streamer.settings_slices import SpeechSettings
from streamer.units import MODEL_RATE

log = logging.getLogger(__name__)


class Conversation:
    def __init__(
        self,
        session_id: str,
        template: PreparedTemplate,
        pool: RenderPool,
        settings: SpeechSettings,
        clock: Clock,
        metrics: Metrics,
        emit: Callable[[Event], None],
        on_failure: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        """`on_failure(task name, exception)` hears of a background task (the dispatcher) that died."""
        self.id = session_id
        self.template = template
        self.settings = settings
        self.clock = clock
        self._pool = pool
        self._metrics = metrics
        self._emit = emit
        self.epoch = 0
        self.playout = Playout(self._on_playout_event)
        self.stream: LiveStream | None = None
        self.render_failures = 0
        self.closed = False
        self.active_at = clock.now()
        """When speech last arrived or played (the idle timeout counts from here)."""
        self._ids = 0
        self._pending: asyncio.Queue[Utterance] = asyncio.Queue()
        self._cut = asyncio.Event()
        """Set when windows are cut (or an interrupt drops them): the dispatcher looks again."""
        self._tasks = TaskSet(f"conversation-{session_id}", on_failure)
        if template.welcome is not None and template.welcome.units:
            self.playout.enqueue(welcome_utterance(template.welcome, self.epoch))

    def start(self) -> None:
        """Start rendering (needs a running event loop)."""
        self._tasks.spawn(self._dispatch(), name="dispatcher")

    # --- speech in ------------------------------------------------------------------------

    def speak(self, audio16k: np.ndarray, audio48k: np.ndarray, arrived: float | None = None) -> Utterance:
        """Queue a whole utterance (an upload); its windows start rendering at once.

        `arrived`: when the request came in, on the clock's scale, for the latency figures.
        """
        if len(audio16k) == 0:
            raise BadInput("the audio holds no samples")
        utterance = self._new_utterance()
        utterance.first_audio_at = self.clock.now() if arrived is None else arrived
        self.windows_cut(utterance.add_audio(audio.to_int16(audio48k), audio16k))
        self.windows_cut(utterance.end())
        log.info("session %s: utterance %s queued (%.2f s)", self.id, utterance.id, len(audio16k) / MODEL_RATE)
        return utterance

    def open_stream(self, sample_rate: int) -> LiveStream:
        """Start a live utterance; one at a time per conversation."""
        audio.check_pcm_rate(sample_rate)
        if self.stream is not None:
            raise Busy(f"stream {self.stream.utterance_id} is open on this session: send end first")
        self.stream = LiveStream(self, self._new_utterance(), sample_rate, self._pool.stats())
        log.info("session %s: streamed utterance %s started", self.id, self.stream.utterance_id)
        return self.stream

    def stream_ended(self, stream: LiveStream) -> None:
        if self.stream is stream:
            self.stream = None

    def windows_cut(self, windows: list[Window]) -> None:
        if windows:
            self._cut.set()

    def pause(self) -> bool:
        """Hold the speech where it is (barge-in): idle ticks, renders go on; False if none queued."""
        return self.playout.pause()

    def resume(self) -> bool:
        """Play on, in sync, from where `pause` held it; False when it was not paused."""
        return self.playout.resume()

    def interrupt(self) -> list[Interrupted]:
        """Drop all queued speech: idle from the next tick, renders in flight discarded.

        Returns one `interrupted` event per dropped utterance (the welcome included), with how much had played."""
        self.epoch += 1
        self._pool.cancel(self.id)
        events = self.playout.interrupt()
        for event in events:
            self._on_playout_event(event)
        while not self._pending.empty():
            self._pending.get_nowait()
        if self.stream is not None:
            self.stream.drop()
            self.stream = None
        self._cut.set()
        log.info("session %s: interrupted (%d utterances dropped)", self.id, len(events))
        return events

    def _new_utterance(self) -> Utterance:
        if self.closed:
            raise NotFound(f"session {self.id} has ended")
        if self.queued_seconds > self.settings.max_queued_seconds:
            raise Busy(f"more than {self.settings.max_queued_seconds:.0f} s of speech queued")
        self._ids += 1
        self.active_at = self.clock.now()
        cutter = Segmenter(self.settings.first_window_s, self.settings.window_s)
        utterance = Utterance(f"{self.id}-{self._ids}", self.epoch, cutter=cutter)
        self.playout.enqueue(utterance)
        self._pending.put_nowait(utterance)
        self._metrics.request()
        return utterance

    # --- rendering ------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Render each utterance's windows, utterances in order, windows as they are cut.

        An utterance is dispatched only after the one before it has ended, so its loop
        positions can follow on from it (`Playout.assign_base`).
        """
        in_flight = asyncio.Semaphore(len(self._pool.stats()) + 1)
        while True:
            utterance = await self._pending.get()
            if utterance.epoch != self.epoch:
                continue  # dropped by an interrupt
            placed = self.playout.assign_base(utterance)
            assert placed, "utterances are dispatched in order, each after the one before ended"
            await self._dispatch_windows(utterance, in_flight)

    async def _dispatch_windows(self, utterance: Utterance, in_flight: asyncio.Semaphore) -> None:
        sent = 0
        while utterance.epoch == self.epoch:
            self._cut.clear()
            for window in utterance.windows[sent:]:
                await in_flight.acquire()
                if utterance.epoch != self.epoch:  # interrupted while waiting for a slot
                    in_flight.release()
                    return
                name = f"render-{utterance.id}@{window.first_unit}"
                self._tasks.spawn(self._render(utterance, window, in_flight), name=name)
                sent += 1
            if utterance.ended and sent == len(utterance.windows):
                return
            if sent == len(utterance.windows):
                await self._cut.wait()

    def _job(self, utterance: Utterance, window: Window) -> RenderJob:
        assert utterance.base_position is not None
        ended, context = utterance.ended, self._pool.audio_context_units
        clip, first = job_audio(utterance.model_audio.view, window.first_unit, window.units, ended, context)
        first_position = utterance.base_position + window.first_unit
        return RenderJob(
            template_id=self.template.id,
            positions=np.arange(first_position, first_position + window.units, dtype=np.int64),
            audio=clip.copy(),
            first_unit=first,
            final=ended,
            session_id=self.id,
            due_in_s=self.playout.due_in_s(utterance, window.first_unit),
        )

    async def _render(self, utterance: Utterance, window: Window, in_flight: asyncio.Semaphore) -> None:
        try:
            job = self._job(utterance, window)
            started = time.perf_counter()
            try:
                crops = await self._pool.render(job)
                if crops.shape[:1] != (window.units,):
                    raise StreamerError(f"{crops.shape[0]} crops for {window.units} frames")
            except Cancelled:
                return  # an interrupt dropped it
            except Exception as exc:  # noqa: BLE001 - its audio still plays, over the still face
                if utterance.epoch == self.epoch:
                    self.render_failures += 1
                    self._metrics.render_failures.inc()
                    window.failed = True
                    log.error("session %s: window %d of %s failed: %s", self.id, window.first_unit, utterance.id, exc)
                return
            self._metrics.render_seconds.observe(time.perf_counter() - started)
            if utterance.epoch == self.epoch:
                window.crops = crops
        finally:
            in_flight.release()

    # --- playout --------------------------------------------------------------------------

    def tick(self) -> Unit:
        """The unit to play now (the media pump calls this once per frame)."""
        stream = self.stream
        if stream is not None and self.clock.now() - stream.last_audio_at > self.settings.stream_idle_s:
            idle_s = self.settings.stream_idle_s
            log.info("session %s: stream %s sent no audio for %.0f s; ending it", self.id, stream.utterance_id, idle_s)
            stream.end()
        unit = self.playout.tick()
        self._metrics.units.labels(unit.kind).inc()
        if unit.kind != "idle":
            self.active_at = self.clock.now()
        return unit

    def _on_playout_event(self, event: Event) -> None:
        if getattr(event, "utterance_id", None) == WELCOME:  # not a request: no metrics, only its end is told
            if isinstance(event, SpeakingEnded):
                self._emit(WelcomeEnded())
            return
        if isinstance(event, SpeakingStarted):
            utterance = self.playout.current
            if utterance is not None and utterance.first_audio_at is not None:
                self._metrics.first_speech_frame(self.clock.now() - utterance.first_audio_at)
        elif isinstance(event, SpeakingEnded):
            self._metrics.completed_request()
        elif isinstance(event, Interrupted):
            self._metrics.interrupted_request()
        self._emit(event)

    @property
    def speaking(self) -> bool:
        """Speech playing, paused or queued (the welcome clip aside): the one definition that
        admission counts as a speaking session and a drain waits for."""
        return self.playout.holds_speech

    @property
    def playing(self) -> Utterance | None:
        """The answer (not the welcome clip) that has begun to play and not ended; a pause holds it."""
        return self.playout.current if self.playout.state == "speaking" else None

    @property
    def holds_anything(self) -> bool:
        """Anything `interrupt` would drop: an utterance queued (the welcome clip included) or a pause."""
        return self.playout.paused or self.playout.current is not None

    @property
    def queued_seconds(self) -> float:
        return self.playout.queued_seconds

    def describe(self) -> dict[str, Any]:
        c = self.playout.counters
        return {
            "session_id": self.id,
            "template": self.template.id,
            "renderer": self._pool.renderer,
            "state": self.playout.state,
            "queued_seconds": round(self.queued_seconds, 3),
            "utterances": self._ids,
            "streaming": self.stream is not None,
            "units": c.ticks,
            "speech_units": c.speech_units,
            "idle_units": c.idle_units,
            "stalls": c.stalls,
            "starved": c.starved,
            "failed_units": c.failed_units,
            "render_failures": self.render_failures,
        }

    async def close(self) -> None:
        """Stop rendering; later speech is refused. Renders in flight are discarded."""
        self.closed = True
        self.epoch += 1
        self._pool.cancel(self.id)
        if self.stream is not None:
            self.stream.drop()
            self.stream = None
        await self._tasks.close()
