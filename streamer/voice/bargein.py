"""Barge-in: the user's speech over the answer pauses it, their words interrupt it.

`paused` is entered when speech over a playing answer has lasted `barge_in_min_speech_ms`:
the answer holds, silent, at its place. Words in that speech commit the interrupt (the reply
engine's, which closes the LLM stream and trims the history, else the speech engine's); no
words within `false_interruption_s` resume it where it paused. Every path leaves `paused`,
so an answer is never stuck: `expire` at the deadline is the last word. An answer dropped
otherwise while it is held (a typed turn, `POST /interrupt`) ends the pause there and then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from streamer.core.conversation import Conversation
from streamer.core.events import Event, ReplyPaused, ReplyResumed
from streamer.core.utterance import Utterance
from streamer.voice.control import ReplyControl

log = logging.getLogger(__name__)


class BargeIn:
    def __init__(
        self,
        conversation: Conversation,
        reply: Callable[[], ReplyControl | None],
        emit: Callable[[Event], None],
        clock: Callable[[], float],
        false_interruption_s: float,
    ) -> None:
        self._conversation = conversation
        self._reply = reply
        self._emit = emit
        self._clock = clock
        self.false_interruption_s = false_interruption_s
        self.turn_id = ""
        self.paused_at = 0.0
        self._held: Utterance | None = None
        """The answer the pause holds (None: no pause)."""
        self.commits = 0
        self.resumes = 0

    @property
    def state(self) -> str:
        """`idle` or `paused`."""
        return "idle" if self._held is None else "paused"

    @property
    def deadline(self) -> float:
        return self.paused_at + self.false_interruption_s

    def speech_lasted(self, turn_id: str) -> bool:
        """The user's speech reached `barge_in_min_speech_ms`: pause a playing answer."""
        self._forget_dropped()
        if self.state == "paused" or self._conversation.playing is None:
            return False
        held = self._conversation.playing
        if not self._conversation.pause():
            return False
        self._held, self.turn_id, self.paused_at = held, turn_id, self._clock()
        log.info("session %s: the user speaks over the answer (turn %s): paused", self._conversation.id, turn_id)
        self._emit(ReplyPaused(turn_id))
        return True

    def heard(self, text: str) -> None:
        """Recognition of the speech over the answer: words commit, none resume."""
        self._forget_dropped()
        if self.state != "paused":
            return
        if text.strip():
            self._commit()
        else:
            self._resume("no words")

    def expire(self) -> None:
        """The deadline passed with no words known: resume (a no-op when already decided)."""
        self._forget_dropped()
        if self.state == "paused" and self._clock() >= self.deadline:
            self._resume(f"no words within {self.false_interruption_s:.1f} s")

    def _forget_dropped(self) -> None:
        """The held answer was dropped otherwise: no pause is left to commit or resume."""
        if self.state == "paused" and self._conversation.playing is not self._held:
            self._held = None
            self._conversation.resume()  # a no-op after an interrupt: nothing may stay held
            log.info("session %s: the paused answer was dropped otherwise", self._conversation.id)

    def _commit(self) -> None:
        self._held = None
        self.commits += 1
        reply = self._reply()
        log.info("session %s: words over the answer: interrupting it", self._conversation.id)
        if reply is not None and reply.replying:
            reply.interrupt()
        if self._conversation.holds_anything:
            self._conversation.interrupt()  # whatever the reply engine left queued goes too

    def _resume(self, why: str) -> None:
        self._held = None
        self.resumes += 1
        paused_s = round(self._clock() - self.paused_at, 3)
        self._conversation.resume()
        log.info("session %s: %s: the answer resumes after %.2f s", self._conversation.id, why, paused_s)
        self._emit(ReplyResumed(self.turn_id, paused_s))
