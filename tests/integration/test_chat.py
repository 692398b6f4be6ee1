"""The reply engine over real parts: a fake OpenAI-compatible server (SSE, pcm speech), the
server with `llm_url` set, and an aiortc viewer on loopback that hears the answer."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from streamer.config import ROOT, Settings
from streamer.headless.client import Client
from streamer.headless.measure import audio_envelope, mouth_motion
from streamer.server.keys import SESSIONS, SETTINGS, STARTUP
from tests.fake_llm import FakeLlm, Script, fake_llm
from tests.integration.conftest import LiveServer, live_server
from tests.integration.test_dotnet import build_program, dotnet_available, run
from tests.integration.test_session import MOVING, SPEECH_RMS
from tests.support.servers import free_port

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

PERSONA = "You are Lao Shi, a patient teacher."
MANDARIN = "你好！我是数字人老师。今天天气很好，我们一起去公园散步吧。"
LONG = " ".join(["This answer goes on for a long while, one clause after another."] * 12)


@dataclass
class Chat:
    server: LiveServer
    llm: FakeLlm


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Chat]:
    """A server with a reply engine; template `laoshi` has a Mandarin voice and a persona."""
    templates = tmp_path_factory.mktemp("templates")
    for name in ("astronaut.png", "astronaut.json", "welcome.wav"):
        shutil.copy(ROOT / "templates" / name, templates / name)
    shutil.copy(ROOT / "templates" / "astronaut.png", templates / "laoshi.png")
    (templates / "laoshi.json").write_text(
        f'{{"name": "Lao Shi", "welcome_audio": "welcome.wav", "persona": "{PERSONA}", "voice": "cmn"}}'
    )
    with fake_llm() as llm:
        settings = Settings(
            cache_dir=cache_dir, templates_dir=templates, llm_url=llm.url, llm_model="fake-7b", llm_api_key="sk-test"
        )
        with live_server(settings) as server:
            yield Chat(server, llm)


async def viewer(server: LiveServer, template: str = "astronaut") -> Client:
    client = Client(server.url)
    await client.connect(template)
    await client.wait_event("welcome_ended", timeout=30)
    return client


async def test_a_typed_question_is_answered_aloud_with_moving_lips(chat: Chat):
    chat.llm.scripts[:] = [Script("Hello there! I am glad you asked. The sky is blue because of the air.")]
    client = await viewer(chat.server)
    try:
        idle = client.received.frames[-1].astype(np.int16)
        turn, sent = await client.chat("Why is the sky blue?")
        await client.wait_event("reply_started", turn)
        started = await client.wait_event("speaking_started", timeout=20)
        ended = await client.wait_event("reply_ended", turn, timeout=30)
        at_end = time.monotonic()
        await client.wait_frames(5)
        assert ended["interrupted"] is False
        assert ended["spoken_text"] == "Hello there! I am glad you asked. The sky is blue because of the air."
        text = "".join(e["text"] for _, e in client.received.events if e.get("type") == "reply_text")
        assert text == ended["spoken_text"]

        _, rms = audio_envelope(client.received, sent, at_end)
        assert (rms > SPEECH_RMS).mean() > 0.3  # the answer was heard
        _, motion = mouth_motion(client.received, sent, at_end, idle)
        assert (motion > MOVING).mean() > 0.2  # and the lips moved
        assert started["utterance_id"].startswith(client.session_id)

        timing = await client.wait_event("turn_timing", turn)
        stages = ["llm_first_token_ms", "first_sentence_ms", "tts_first_audio_ms", "first_frame_ms"]
        assert all(timing[k] is not None for k in stages)
        assert [timing[k] for k in stages] == sorted(timing[k] for k in stages)

        request = chat.llm.requests[-1]
        assert request["stream"] is True and request["model"] == "fake-7b" and request["_auth"] == "Bearer sk-test"
        assert request["messages"][0]["role"] == "system"
        assert request["messages"][-1] == {"role": "user", "content": "Why is the sky blue?"}
        state = await client.state()
        assert state["chat"] is True and state["replying"] is False
    finally:
        await client.close()


async def test_history_carries_over_to_the_next_question(chat: Chat):
    chat.llm.scripts[:] = [Script("Nice to meet you, Ada."), Script("Your name is Ada.")]
    client = await viewer(chat.server)
    try:
        first, _ = await client.chat("My name is Ada.")
        await client.wait_event("reply_ended", first, timeout=30)
        second, _ = await client.chat("What is my name?")
        await client.wait_event("reply_ended", second, timeout=30)
        messages = chat.llm.requests[-1]["messages"]
        assert messages[1:] == [
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Nice to meet you, Ada."},
            {"role": "user", "content": "What is my name?"},
        ]
    finally:
        await client.close()


async def test_interrupt_hangs_up_on_the_llm_and_keeps_what_was_heard(chat: Chat):
    chat.llm.scripts[:] = [Script(LONG, token_s=0.05), Script("Sure.")]
    client = await viewer(chat.server)
    hung_up = chat.llm.hung_up
    try:
        turn, _ = await client.chat("Tell me a long story.")
        started = await client.wait_event("speaking_started", timeout=20)
        await client.wait_frames(40)
        reply = await client.interrupt()
        at = time.monotonic()
        assert started["utterance_id"] in {e["utterance_id"] for e in reply["interrupted"]}
        await chat.llm.wait_for(hung_up=hung_up + 1)  # the LLM saw its stream closed
        ended = await client.wait_event("reply_ended", turn)
        assert ended["interrupted"] is True
        heard = ended["spoken_text"]
        assert heard and LONG.startswith(heard) and len(heard) < len(LONG) / 2
        await client.wait_frames(15)
        _, rms = audio_envelope(client.received, at + 0.2, time.monotonic())
        assert rms.max() < SPEECH_RMS  # silence after the interrupt

        after, _ = await client.chat("Go on.")
        await client.wait_event("reply_ended", after, timeout=30)
        assistant = chat.llm.requests[-1]["messages"][-2]
        assert assistant == {"role": "assistant", "content": heard + "…"}
    finally:
        await client.close()


async def test_a_new_chat_interrupts_the_reply_in_progress(chat: Chat):
    chat.llm.scripts[:] = [Script(LONG, token_s=0.05), Script("Second answer here.")]
    client = await viewer(chat.server)
    hung_up = chat.llm.hung_up
    try:
        first, _ = await client.chat("Talk for a while.")
        await client.wait_event("reply_text", first, timeout=20)
        second, _ = await client.chat("Stop, another question.")
        await chat.llm.wait_for(hung_up=hung_up + 1)
        assert (await client.wait_event("reply_ended", first))["interrupted"] is True
        ended = await client.wait_event("reply_ended", second, timeout=30)
        assert ended == {**ended, "interrupted": False, "spoken_text": "Second answer here."}
    finally:
        await client.close()


async def test_a_failing_llm_gives_an_error_event_and_the_session_streams_on(chat: Chat):
    chat.llm.scripts[:] = [Script(status=500), Script("Fine again.", fail_after=1), Script("All good now.")]
    client = await viewer(chat.server)
    try:
        turn, _ = await client.chat("Hello?")
        error = await client.wait_event("error", turn, timeout=20)
        assert "500" in error["error"]
        assert (await client.wait_event("reply_ended", turn))["spoken_text"] == ""
        broken, _ = await client.chat("Hello again?")
        error = await client.wait_event("error", broken, timeout=20)
        assert "before [DONE]" in error["error"] or "reach" in error["error"]
        await client.wait_event("reply_ended", broken, timeout=20)
        frames = len(client.received.frames)
        await client.wait_frames(10)  # the stream goes on
        assert len(client.received.frames) >= frames + 10
        ok, _ = await client.chat("And now?")
        assert (await client.wait_event("reply_ended", ok, timeout=30))["spoken_text"] == "All good now."
        users = [m["content"] for m in chat.llm.requests[-1]["messages"] if m["role"] == "user"]
        assert users[-1] == "Hello?\nHello again?\nAnd now?"  # the failed questions stay in history
    finally:
        await client.close()


async def test_a_mandarin_answer_is_spoken_with_the_templates_voice_and_persona(chat: Chat):
    chat.llm.scripts[:] = [Script(MANDARIN, token_s=0.02)]
    client = await viewer(chat.server, "laoshi")
    try:
        session = chat.server.app[SESSIONS].sessions[client.session_id]
        assert session.replier is not None and session.replier.persona.voice == "cmn"
        turn, sent = await client.chat("你好")
        ended = await client.wait_event("reply_ended", turn, timeout=40)
        assert ended["spoken_text"] == MANDARIN and not ended["interrupted"]
        _, rms = audio_envelope(client.received, sent, time.monotonic())
        assert (rms > SPEECH_RMS).mean() > 0.3
        assert chat.llm.requests[-1]["messages"][0] == {"role": "system", "content": PERSONA}
    finally:
        await client.close()


async def test_without_llm_url_chat_answers_409_naming_it(server):
    client = Client(server.url)
    await client.connect("astronaut")
    try:
        state = await client.state()
        assert state["chat"] is False
        body = await client.call("POST", f"/api/sessions/{client.session_id}/chat", expect=409, json={"text": "hi"})
        assert "llm_url" in body["error"]
    finally:
        await client.close()


async def test_chat_refuses_bad_text(chat: Chat):
    client = Client(chat.server.url)
    await client.connect("astronaut")
    try:
        path = f"/api/sessions/{client.session_id}/chat"
        for body in ({"text": ""}, {"text": "x" * 2001}, {"text": 3}, {}):
            assert "text" in (await client.call("POST", path, expect=400, json=body))["error"]
    finally:
        await client.close()


async def test_a_chat_is_refused_with_503_while_draining(chat: Chat):
    client = Client(chat.server.url)
    await client.connect("astronaut")
    startup = chat.server.app[STARTUP]

    async def draining(value: bool) -> None:
        startup.draining = value

    try:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(draining(True), chat.server.loop))
        path = f"/api/sessions/{client.session_id}/chat"
        body = await client.call("POST", path, expect=503, json={"text": "Are you there?"})
        assert "shutting down" in body["error"]
    finally:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(draining(False), chat.server.loop))
        await client.close()


@pytest.mark.skipif(not dotnet_available(), reason="Mono (mcs, mono, System.Net.Http) is not installed")
async def test_the_csharp_backend_asks_and_the_viewer_hears_the_answer(chat: Chat, tmp_path: Path):
    program = build_program(tmp_path / "dh.exe")
    chat.llm.scripts[:] = [Script("Hello from the backend's question.")]
    client = await viewer(chat.server)
    try:
        asked = await run(program, "chat", chat.server.url, client.session_id, client.token, "Hi from C#")
        ended = await client.wait_event("reply_ended", asked["turn_id"], timeout=30)
        assert ended["spoken_text"] == "Hello from the backend's question."
        assert chat.llm.requests[-1]["messages"][-1] == {"role": "user", "content": "Hi from C#"}
    finally:
        await client.close()


async def test_two_sessions_chatting_at_once_never_mix_histories(chat: Chat):
    chat.llm.scripts[:] = [Script("Noted, thank you.", token_s=0.02)]
    a, b = await asyncio.gather(viewer(chat.server), viewer(chat.server))
    try:
        turns = await asyncio.gather(a.chat("I am Alice."), b.chat("I am Bob."))
        await asyncio.gather(
            *(c.wait_event("reply_ended", t, timeout=30) for c, (t, _) in zip((a, b), turns, strict=True))
        )
        again = await asyncio.gather(a.chat("Who am I, Alice?"), b.chat("Who am I, Bob?"))
        await asyncio.gather(
            *(c.wait_event("reply_ended", t, timeout=30) for c, (t, _) in zip((a, b), again, strict=True))
        )
        for name, other in (("Alice", "Bob"), ("Bob", "Alice")):
            request = next(r for r in chat.llm.requests if r["messages"][-1]["content"] == f"Who am I, {name}?")
            said = " ".join(m["content"] for m in request["messages"])
            assert f"I am {name}." in said and other not in said
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_an_llm_that_is_down_gives_an_error_and_the_session_streams_on(chat: Chat, cache_dir: Path):
    templates = chat.server.app[SETTINGS].templates_dir
    down = Settings(cache_dir=cache_dir, templates_dir=templates, llm_url=f"http://127.0.0.1:{free_port()}/v1")
    with live_server(down) as server:
        client = await viewer(server)
        try:
            turn, _ = await client.chat("Anyone there?")
            error = await client.wait_event("error", turn, timeout=20)
            assert "cannot reach the LLM" in error["error"]
            ended = await client.wait_event("reply_ended", turn)
            assert ended["spoken_text"] == "" and ended["interrupted"] is False
            await client.wait_frames(10)  # the stream goes on
            assert (await client.state())["state"] == "idle"
        finally:
            await client.close()
