"""The reply engine of one session: a question in, the LLM's answer spoken as it is written.

The LLM's deltas are cut into sentences; each sentence is synthesised as soon as it is
complete (while the LLM writes on) and its audio fed, as it comes, into one live utterance of
the conversation, sentences back to back. An interrupt hangs up on the LLM, drops the TTS,
stops the voice, and keeps in the history only the words that were played.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from streamer.core.conversation import Conversation
from streamer.core.events import (
    Event,
    Failed,
    Interrupted,
    ReplyEnded,
    ReplyStarted,
    ReplyText,
    SpeakingEnded,
    SpeakingStarted,
)
from streamer.core.livestream import LiveStream
from streamer.core.tasks import TaskSet
from streamer.errors import StreamerError
from streamer.reply.history import History, Spoken
from streamer.reply.sentences import SentenceCutter
from streamer.reply.services import Persona, ReplyServices
from streamer.reply.speech import Speech
from streamer.reply.turn import Reply

log = logging.getLogger(__name__)

HEADROOM_S = 2.0
"""A reply waits while the session holds more than `max_queued_seconds` less this of speech."""
BACKPRESSURE_POLL_S = 0.2
ROLLOVER_S = 1.0
"""A reply's live utterance ends this short of `max_audio_seconds`; the next one follows it."""


class Replier:
    def __init__(
        self, conversation: Conversation, services: ReplyServices, emit: Callable[[Event], None], persona: Persona
    ) -> None:
        self._conversation = conversation
        self._services = services
        self._emit = emit
        self.persona = persona
        self.history = History(services.settings.llm_history_turns)
        self._speech: Speech | None = None
        self._reply: Reply | None = None
        self._turns = 0
        self._tasks = TaskSet(f"replies-{conversation.id}")

    @property
    def replying(self) -> bool:
        """From `start_turn` until its `reply_ended`."""
        return self._reply is not None

    async def start_turn(self, text: str, *, timing: dict[str, float] | None = None) -> str:
        """Answer `text` (interrupting a reply in progress first); returns the turn's id.

        `timing`: stages before the text (`vad_end_ms`, `asr_ms`), reported in `turn_timing`.
        A live stream opened from outside gives way too: the answer takes the floor."""
        self.interrupt()
        if self._conversation.stream is not None:
            self._conversation.interrupt()
        self._turns += 1
        turn_id = f"{self._conversation.id}-t{self._turns}"
        reply = Reply(turn_id, self.history.add(text), self._conversation.clock.now(), dict(timing or {}))
        self._reply = reply
        log.info("session %s: turn %s (%d characters)", self._conversation.id, turn_id, len(text))
        self._emit(ReplyStarted(turn_id))
        reply.chat = self._services.chat(self.history.messages(self.persona.prompt))
        self._warm_speech()
        reply.tasks = [
            self._tasks.spawn(self._write(reply), name=f"llm-{turn_id}"),
            self._tasks.spawn(self._say(reply), name=f"tts-{turn_id}"),
        ]
        return turn_id

    def interrupt(self) -> None:
        """Hang up on the LLM, drop pending TTS, stop the voice, keep what was heard."""
        if self._reply is not None:
            self.interrupt_all()

    def interrupt_all(self) -> list[Interrupted]:
        """`interrupt`, and stop whatever else speaks; returns the conversation's `interrupted` events."""
        reply = self._reply
        if reply is not None:
            self._halt(reply)
        events = self._conversation.interrupt()  # `observe` notes where the reply's speech stopped
        if reply is not None:
            self._finish(reply, interrupted=True)
        return events

    def observe(self, event: Event) -> None:
        """The session's events: the reply's utterance starting, ending, or interrupted from outside."""
        reply = self._reply
        uid = getattr(event, "utterance_id", None)
        if reply is None or uid not in reply.utterances:
            return
        offset = reply.utterances[uid]
        if isinstance(event, SpeakingStarted):
            reply.mark("first_frame_ms", self._conversation.clock.now())
            self._send_timing(reply)
        elif isinstance(event, SpeakingEnded):
            reply.playing.discard(uid)
            reply.heard_s = max(reply.heard_s, offset + event.duration_s)
            self._finish_if_done(reply)
        elif isinstance(event, Interrupted):
            reply.playing.discard(uid)
            cut = offset + event.position_s
            reply.cut_s = cut if reply.cut_s is None else min(reply.cut_s, cut)
            if not reply.halted:  # the conversation was interrupted directly (another path)
                self._halt(reply)
                self._finish(reply, interrupted=True)

    async def close(self) -> None:
        if self._reply is not None:
            self._halt(self._reply)
            self._reply = None
        await self._tasks.close()
        if self._speech is not None:
            await self._speech.close()

    # --- the two tasks of a reply -----------------------------------------------------------

    async def _write(self, reply: Reply) -> None:
        """LLM deltas → `reply_text` events and complete sentences for `_say`."""
        assert reply.chat is not None
        clock = self._conversation.clock
        cutter = SentenceCutter()
        try:
            async for delta in reply.chat.deltas():
                reply.mark("llm_first_token_ms", clock.now())
                self._emit(ReplyText(reply.turn_id, delta))
                for sentence in cutter.push(delta):
                    reply.mark("first_sentence_ms", clock.now())
                    reply.sentences.put_nowait(sentence)
            rest = cutter.flush()
            if rest:
                reply.mark("first_sentence_ms", clock.now())
                reply.sentences.put_nowait(rest)
        except StreamerError as exc:
            self._fail(reply, exc)
        finally:
            reply.sentences.put_nowait(None)

    async def _say(self, reply: Reply) -> None:
        """Sentences → speech, pushed into the reply's live utterance as it is made."""
        try:
            while (sentence := await reply.sentences.get()) is not None:
                await self._say_sentence(reply, sentence)
        except StreamerError as exc:
            self._fail(reply, exc)
            if reply.chat is not None:
                reply.chat.close()  # nothing more can be said
        reply.speech_done = True
        if reply.stream is not None:
            reply.stream.end()
        self._finish_if_done(reply)

    def _warm_speech(self) -> None:
        """Have the TTS engine ready for the next sentence while the LLM writes it."""
        try:
            if self._speech is None:
                self._speech = self._services.speech(self.persona.voice)
        except StreamerError:
            return  # said when a sentence needs it
        self._tasks.spawn(self._warm(self._speech), name="tts-warm")

    async def _warm(self, speech: Speech) -> None:
        try:
            await speech.warm()
        except StreamerError as exc:
            log.warning("session %s: TTS not ready: %s", self._conversation.id, exc)

    async def _say_sentence(self, reply: Reply, sentence: str) -> None:
        if self._speech is None:
            self._speech = self._services.speech(self.persona.voice)
        speech = self._speech
        self._warm_speech()  # the next sentence's process starts while this one speaks
        start = reply.audio_s
        reply.spoken.append(Spoken(sentence, start, start))
        async for chunk in speech.stream(sentence):
            reply.mark("tts_first_audio_ms", self._conversation.clock.now())
            stream = await self._room(reply, speech.sample_rate, len(chunk) / 2 / speech.sample_rate)
            stream.push(chunk)
            reply.audio_s += len(chunk) / 2 / speech.sample_rate
            reply.spoken[-1] = Spoken(sentence, start, reply.audio_s)

    async def _room(self, reply: Reply, rate: int, seconds: float) -> LiveStream:
        """The live stream to push `seconds` more into, once the session has room for them.

        A long answer waits for its speech to play instead of hitting the live stream's
        `max_queued_seconds` refusal, and goes on in a new utterance near `max_audio_seconds`."""
        settings = self._conversation.settings
        stream = reply.stream
        if stream is not None and (stream.ended or stream.seconds + seconds > settings.max_audio_seconds - ROLLOVER_S):
            stream.end()
            stream = None
        if stream is None:
            stream = self._conversation.open_stream(rate)
            reply.stream = stream
            reply.utterances[stream.utterance_id] = reply.audio_s
            reply.playing.add(stream.utterance_id)
        clock = self._conversation.clock
        while stream.buffered_s() + seconds > settings.max_queued_seconds - HEADROOM_S:
            await clock.sleep_until(clock.now() + BACKPRESSURE_POLL_S)
        return stream

    # --- ending -----------------------------------------------------------------------------

    def _fail(self, reply: Reply, exc: StreamerError) -> None:
        log.warning("session %s: turn %s failed: %s", self._conversation.id, reply.turn_id, exc)
        self._emit(Failed(str(exc), turn_id=reply.turn_id))

    def _halt(self, reply: Reply) -> None:
        """Close the LLM's stream now (the server sees the hang-up) and drop the pending TTS."""
        reply.halted = True
        if reply.chat is not None:
            reply.chat.close()
        for task in reply.tasks:
            task.cancel()

    def _finish_if_done(self, reply: Reply) -> None:
        if reply.speech_done and not reply.playing:
            self._finish(reply, interrupted=False)

    def _finish(self, reply: Reply, interrupted: bool) -> None:
        if self._reply is not reply:
            return
        self._reply = None
        spoken = reply.heard()
        reply.turn.reply, reply.turn.interrupted = spoken, interrupted
        self._send_timing(reply)
        self._emit(ReplyEnded(reply.turn_id, interrupted, spoken))
        log.info(
            "session %s: turn %s ended%s (%d characters spoken)",
            self._conversation.id,
            reply.turn_id,
            " (interrupted)" if interrupted else "",
            len(spoken),
        )

    def _send_timing(self, reply: Reply) -> None:
        if not reply.timing_sent:
            reply.timing_sent = True
            self._emit(reply.timing())
