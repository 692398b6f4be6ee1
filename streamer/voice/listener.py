"""One session's ears: microphone audio in (16 kHz mono), turns, transcripts and barge-in out.

A finished turn's transcript goes to the reply engine (`ReplyControl.start_turn`) when the
session has one; without one the events still go out (a backend can act on `transcript`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import numpy as np

from streamer.config import Settings
from streamer.core.conversation import Conversation
from streamer.core.events import Event, Transcript, UserSpeechEnded, UserSpeechStarted
from streamer.core.tasks import TaskSet
from streamer.voice.asr import RecognitionStream
from streamer.voice.bargein import BargeIn
from streamer.voice.control import ReplyControl
from streamer.voice.services import VoiceServices
from streamer.voice.turns import SpeechLasted, SpeechStarted, TurnDetector, TurnEnded, TurnEvent, TurnSettings
from streamer.voice.vad import RATE, Framer, Vad, make_vad

log = logging.getLogger(__name__)

EARLY_S = 0.4
"""After a pause, when recognition first looks at the speech so far (about 1 s of it by then)."""
EARLY_RETRY_S = 0.1


def turn_settings(settings: Settings) -> TurnSettings:
    return TurnSettings(
        threshold=settings.vad_threshold,
        min_speech_ms=settings.turn_min_speech_ms,
        end_silence_ms=settings.turn_end_silence_ms,
        max_s=settings.turn_max_s,
        long_speech_ms=settings.barge_in_min_speech_ms,
    )


class Listener:
    def __init__(
        self,
        conversation: Conversation,
        services: VoiceServices,
        emit: Callable[[Event], None],
        reply: Callable[[], ReplyControl | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        vad: Vad | None = None,
    ) -> None:
        settings = services.settings
        self.id = conversation.id
        self._services = services
        self._emit = emit
        self._reply = reply
        self._clock = clock
        self._vad = vad if vad is not None else make_vad()
        self._framer = Framer(self._vad.frame_samples)
        self.turns = TurnDetector(turn_settings(settings), self._vad.frame_samples * 1000 / RATE, clock)
        self.bargein = BargeIn(conversation, reply, emit, clock, settings.false_interruption_s)
        self.turn_id = ""
        self._count = 0
        self._timers: list[asyncio.TimerHandle] = []
        self._stream: RecognitionStream | None = None
        """The current turn's recognition, fed as it is spoken (None: no stream free yet; recognised
        whole at its end if none frees before)."""
        self._unsent: list[np.ndarray] = []
        self._tasks = TaskSet(f"listener-{self.id}")
        services.recognizer.warm()

    async def feed(self, audio: np.ndarray) -> None:
        """Microphone audio, int16 16 kHz mono, in arrival order (awaited one call at a time)."""
        frames = self._framer.push(audio)
        if not frames:
            return
        loop = asyncio.get_running_loop()
        probabilities = await loop.run_in_executor(self._services.vad_executor, self._score, frames)
        for probability, frame in zip(probabilities, frames, strict=True):
            events = self.turns.push(probability, frame)
            if self._stream is not None:
                self._unsent.append(frame)
            for event in events:
                self._on(event)
        if self._stream is None and self.turns.state == "speaking":
            self._attach_stream()  # a slot freed since this turn began
        self._send()

    async def microphone_stopped(self) -> None:
        """The microphone sent nothing for a pause's length (its track stopped: talk(false)
        mid-sentence, a lost network): a turn in progress hears that pause, so it ends as usual
        instead of holding its recognition worker open. Late frames only delay turns, never cut them."""
        if self.turns.state != "quiet":
            frames = math.ceil(self.turns.settings.end_silence_ms / self.turns.frame_ms) + 1
            await self.feed(np.zeros(frames * self._vad.frame_samples, np.int16))

    def _attach_stream(self) -> None:
        """Recognise the turn while it is spoken, from its audio so far, when a stream is free."""
        self._stream = self._services.recognizer.try_stream()
        if self._stream is not None:
            self._stream.feed(self.turns.audio_so_far())
            self._unsent = []

    def _send(self) -> None:
        if self._stream is not None and self._unsent:
            self._stream.feed(np.concatenate(self._unsent))
        self._unsent = []

    def _score(self, frames: list[np.ndarray]) -> list[float]:
        return [self._vad(frame) for frame in frames]

    def _on(self, event: TurnEvent) -> None:
        if isinstance(event, SpeechStarted):
            self._count += 1
            self.turn_id = f"{self.id}-v{self._count}"
            log.info("session %s: user speech started (turn %s)", self.id, self.turn_id)
            self._emit(UserSpeechStarted(self.turn_id))
            self._attach_stream()
        elif isinstance(event, SpeechLasted):
            if self.bargein.speech_lasted(self.turn_id):
                self._arm_bargein()
        elif isinstance(event, TurnEnded):
            log.info("session %s: user turn %s ended (%.2f s, %s)", self.id, self.turn_id, event.speech_s, event.reason)
            self._emit(UserSpeechEnded(self.turn_id, event.speech_s))
            self._send()
            stream, self._stream = self._stream, None
            self._tasks.spawn(self._recognize(self.turn_id, event, stream), name=f"asr-{self.turn_id}")

    def _arm_bargein(self) -> None:
        """Look for words while the user goes on talking (from `EARLY_S` after the pause, as often
        as recognition allows); resume at the deadline if none came."""
        loop = asyncio.get_running_loop()
        turn_id = self.turn_id
        self._timers = [
            loop.call_later(EARLY_S, lambda: self._tasks.spawn(self._early_words(turn_id), name="early-asr")),
            loop.call_later(self.bargein.false_interruption_s, self.bargein.expire),
        ]

    async def _early_words(self, turn_id: str) -> None:
        recognizer = self._services.recognizer
        while self.bargein.state == "paused" and self.bargein.turn_id == turn_id and self.turns.state != "quiet":
            if recognizer.name == "none":
                return
            stream = self._stream
            text = await (stream.partial() if stream else recognizer.transcribe(self.turns.audio_so_far()))
            if text and self.bargein.turn_id == turn_id:
                self.bargein.heard(text)
            await asyncio.sleep(EARLY_RETRY_S)  # let more of the speech come in

    async def _recognize(self, turn_id: str, ended: TurnEnded, stream: RecognitionStream | None) -> None:
        started = self._clock()
        text = await (stream.finish() if stream else self._services.recognizer.transcribe(ended.audio))
        asr_ms = round((self._clock() - started) * 1000, 1)
        if self.bargein.turn_id == turn_id:
            self.bargein.heard(text)
        log.info("session %s: turn %s heard %r in %.0f ms", self.id, turn_id, text, asr_ms)
        self._emit(Transcript(turn_id, text, asr_ms))
        reply = self._reply()
        if text and reply is not None:
            await reply.start_turn(text, timing={"vad_end_ms": ended.vad_end_ms, "asr_ms": asr_ms})

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        await self._tasks.close()
        if self._stream is not None:  # a turn cut short: its worker goes back to the pool
            await self._stream.finish()
            self._stream = None
