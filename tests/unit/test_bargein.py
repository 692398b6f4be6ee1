"""Barge-in on the real speech engine (fake clock, fake pool): pause, then commit or resume.

The reply engine is a small recording object that follows `ReplyControl`.
"""

from __future__ import annotations

import numpy as np

from streamer.config import Settings
from streamer.core.clock import FakeClock
from streamer.core.conversation import Conversation
from streamer.core.events import ReplyPaused, ReplyResumed
from streamer.metrics import Metrics
from streamer.units import MODEL_SAMPLES_PER_UNIT, OUT_SAMPLES_PER_UNIT
from streamer.voice.bargein import BargeIn
from tests.fakes import FakePool, play_ticks, tiny_template


class RecordingReply:
    """A reply engine that records what it was asked (and interrupts the speech like the real one)."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.replying = True
        self.turns: list[tuple[str, dict[str, float] | None]] = []
        self.interrupts = 0

    async def start_turn(self, text: str, *, timing: dict[str, float] | None = None) -> str:
        self.turns.append((text, timing))
        return f"t{len(self.turns)}"

    def interrupt(self) -> None:
        self.interrupts += 1
        self.replying = False
        self.conversation.interrupt()


class Rig:
    def __init__(self, with_reply: bool = True) -> None:
        self.clock = FakeClock()
        self.events: list = []
        self.core = Conversation(
            "s1", tiny_template(), FakePool(self.clock), Settings(), self.clock, Metrics(), self.events.append
        )
        self.core.start()
        self.reply = RecordingReply(self.core) if with_reply else None
        self.bargein = BargeIn(self.core, lambda: self.reply, self.events.append, self.clock.now, 1.5)

    async def play(self, ticks: int) -> list:
        return await play_ticks(self.core, self.clock, ticks)

    def answer(self, units: int) -> None:
        audio16k = np.full(units * MODEL_SAMPLES_PER_UNIT, 0.1, np.float32)
        audio48k = (np.repeat(np.arange(1, units + 1), OUT_SAMPLES_PER_UNIT) / 32767.0).astype(np.float32)
        self.core.speak(audio16k, audio48k)

    def types(self) -> list[str]:
        return [e.type for e in self.events]


def heard(units: list) -> list[int]:
    return [int(u.audio[0]) for u in units if u.kind == "speech"]


async def test_no_words_within_the_deadline_resumes_where_it_paused():
    rig = Rig()
    rig.answer(50)
    before = heard(await rig.play(10))
    assert rig.bargein.speech_lasted("v1") and rig.bargein.state == "paused"
    assert not rig.bargein.speech_lasted("v1")  # one pause at a time
    held = await rig.play(30)  # 1.2 s: still before the deadline
    rig.bargein.expire()
    assert rig.bargein.state == "paused" and heard(held) == []
    await rig.play(8)
    rig.bargein.expire()
    assert rig.bargein.state == "idle" and rig.bargein.resumes == 1
    after = heard(await rig.play(60))
    assert before + after == list(range(1, 51))  # all of it, once, in order
    assert rig.types() == ["speaking_started", "reply_paused", "reply_resumed", "speaking_ended"]
    resumed = rig.events[2]
    assert isinstance(resumed, ReplyResumed) and resumed.turn_id == "v1" and resumed.paused_s >= 1.5
    assert rig.reply is not None and rig.reply.interrupts == 0
    await rig.core.close()


async def test_words_commit_the_interrupt_through_the_reply_engine():
    rig = Rig()
    rig.answer(50)
    await rig.play(10)
    assert rig.bargein.speech_lasted("v1")
    await rig.play(5)
    rig.bargein.heard("stop please")
    assert rig.bargein.state == "idle" and rig.bargein.commits == 1
    assert rig.reply is not None and rig.reply.interrupts == 1
    assert heard(await rig.play(60)) == []  # never resumed
    assert rig.types() == ["speaking_started", "reply_paused", "interrupted"]
    rig.bargein.expire()  # the deadline passing later changes nothing
    assert rig.types()[-1] == "interrupted"
    await rig.core.close()


async def test_without_a_reply_engine_words_interrupt_the_speech_engine_and_none_resume():
    rig = Rig(with_reply=False)
    rig.answer(30)
    await rig.play(5)
    assert rig.bargein.speech_lasted("v1")
    rig.bargein.heard("")  # recognition found nothing: resume at once
    assert rig.bargein.state == "idle" and isinstance(rig.events[-1], ReplyResumed)
    await rig.play(5)
    assert rig.bargein.speech_lasted("v2")
    assert isinstance(rig.events[-1], ReplyPaused) and rig.events[-1].turn_id == "v2"
    rig.bargein.heard("hello")
    assert rig.types()[-1] == "interrupted" and rig.core.playout.current is None
    await rig.core.close()


async def test_speech_while_nothing_plays_pauses_nothing():
    rig = Rig()
    await rig.play(3)
    assert not rig.bargein.speech_lasted("v1")
    rig.bargein.heard("hello")
    assert rig.bargein.state == "idle" and rig.events == []
    await rig.core.close()


async def test_an_answer_dropped_elsewhere_while_paused_ends_the_pause_and_the_next_can_be_paused():
    rig = Rig()
    rig.answer(50)
    await rig.play(10)
    assert rig.bargein.speech_lasted("v1")
    rig.core.interrupt()  # POST /interrupt, or a typed turn, while the answer is held
    rig.answer(40)  # the typed turn's answer
    assert heard(await rig.play(10)) == list(range(1, 11))  # not held
    assert rig.bargein.speech_lasted("v2")  # speech over the new answer pauses it
    rig.bargein.heard("")  # the first speech's late recognition: no words, resume
    rig.bargein.expire()
    assert rig.bargein.state == "idle" and rig.bargein.resumes == 1 and rig.bargein.commits == 0
    assert heard(await rig.play(40)) == list(range(11, 41))  # all of it, in order
    assert rig.types() == [
        *["speaking_started", "reply_paused", "interrupted"],  # no reply_resumed for the dropped one
        *["speaking_started", "reply_paused", "reply_resumed", "speaking_ended"],
    ]
    await rig.core.close()
