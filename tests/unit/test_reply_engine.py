"""The reply engine's cancellation, with a real conversation core on a fake clock (nothing
plays unless the test ticks it) and the fake OpenAI-compatible server for the LLM and TTS."""

from __future__ import annotations

import asyncio

from streamer.config import Settings
from streamer.core.clock import FakeClock
from streamer.core.conversation import Conversation
from streamer.core.events import Event, ReplyEnded, ReplyStarted, ReplyText
from streamer.metrics import Metrics
from streamer.reply.engine import Replier
from streamer.reply.services import ReplyServices
from tests.fake_llm import Script, fake_llm
from tests.fakes import FakePool, tiny_template

LONG = "One sentence of the long answer here. " * 40


async def test_interrupt_hangs_up_and_keeps_only_what_played():
    with fake_llm(Script(LONG, token_s=0.01)) as llm:
        settings = Settings(llm_url=llm.url, tts="openai", tts_url=llm.url)
        services = ReplyServices(settings)
        clock = FakeClock()
        events: list[Event] = []
        spoken = asyncio.Event()

        def emit(event: Event) -> None:
            events.append(event)
            replier.observe(event)

        conversation = Conversation("s1", tiny_template(), FakePool(clock), settings, clock, Metrics(), emit)
        conversation.start()
        replier = Replier(conversation, services, emit, services.persona("tiny"))
        conversation.open_stream = _watch(conversation.open_stream, spoken)  # type: ignore[method-assign]
        try:
            turn = await replier.start_turn("Tell me everything.")
            await spoken.wait()  # the first sentence's speech is in the live stream
            assert replier.replying and conversation.stream is not None
            replier.interrupt()
            assert not replier.replying and conversation.stream is None
            await llm.wait_for(hung_up=1)  # the LLM saw its stream closed
            assert events[0] == ReplyStarted(turn) and any(isinstance(e, ReplyText) for e in events)
            assert [e for e in events if isinstance(e, ReplyEnded)] == [ReplyEnded(turn, True, "")]
            last = replier.history.turns[-1]
            assert last.interrupted and last.reply == ""  # synthesised, never played: not heard
        finally:
            await replier.close()
            await conversation.close()
            await services.close()


async def test_a_new_turn_interrupts_the_one_in_progress():
    with fake_llm(Script(LONG, token_s=0.01), Script("Short.")) as llm:
        settings = Settings(llm_url=llm.url, tts="openai", tts_url=llm.url)
        services = ReplyServices(settings)
        clock = FakeClock()
        events: list[Event] = []
        written = asyncio.Event()

        def emit(event: Event) -> None:
            events.append(event)
            replier.observe(event)
            if isinstance(event, ReplyText):
                written.set()

        conversation = Conversation("s2", tiny_template(), FakePool(clock), settings, clock, Metrics(), emit)
        conversation.start()
        replier = Replier(conversation, services, emit, services.persona("tiny"))
        try:
            first = await replier.start_turn("First?")
            await written.wait()
            second = await replier.start_turn("Second?", timing={"vad_end_ms": 12.0, "asr_ms": 80.0})
            await llm.wait_for(hung_up=1, requests=2)
            assert ReplyEnded(first, True, "") in events
            assert replier.replying and second != first
            assert [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "user"] == ["First?\nSecond?"]
            assert replier._reply is not None and replier._reply.timing().asr_ms == 80.0
        finally:
            await replier.close()
            await conversation.close()
            await services.close()


def _watch(open_stream, spoken: asyncio.Event):
    """open_stream, setting `spoken` once the stream has taken its first audio."""

    def opened(rate: int):
        stream = open_stream(rate)
        push = stream.push

        def pushed(chunk: bytes) -> None:
            push(chunk)
            spoken.set()

        stream.push = pushed
        return stream

    return opened
