"""Voice turns through the real reply engine: a headless viewer speaks into its microphone, the
fake OpenAI-compatible LLM gets the transcript, the answer is heard; speech over the answer
interrupts it and hangs up on the LLM, and the next request's history holds only what was heard."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.config import Settings
from streamer.headless.client import Client
from streamer.headless.mic import MicTrack
from tests.fake_llm import FakeLlm, Script, fake_llm
from tests.integration.conftest import LiveServer, live_server

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

LONG = " ".join(["This answer goes on for a long while, one clause after another."] * 12)


@pytest.fixture(scope="module")
def voice_chat(cache_dir: Path) -> Iterator[tuple[LiveServer, FakeLlm]]:
    with fake_llm() as llm, live_server(Settings(cache_dir=cache_dir, llm_url=llm.url, llm_model="fake-7b")) as server:
        yield server, llm


@pytest.fixture(scope="module")
def how_are_you(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("voicechat") / "how.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), "Good morning, how are you?"], check=True)
    return path


async def talker(server: LiveServer) -> tuple[Client, MicTrack]:
    mic = MicTrack()
    client = Client(server.url)
    await client.connect("astronaut", mic=mic)
    await client.wait_event("welcome_ended", timeout=60)
    return client, mic


async def test_a_spoken_question_is_answered_by_the_llm_aloud(voice_chat, how_are_you):
    server, llm = voice_chat
    llm.scripts[:] = [Script("I am fine, thank you. And you?")]
    client, mic = await talker(server)
    try:
        asked = len(llm.requests)
        await mic.say_file(how_are_you)
        transcript = await client.wait_event("transcript", timeout=30)
        assert (
            "you" in transcript["text"].split()
        )  # pocketsphinx hears espeak-ng loosely: "how are you" can come out "ha you"
        started = await client.wait_event("reply_started", timeout=30)
        await client.wait_event("speaking_started", timeout=30)
        ended = await client.wait_event("reply_ended", started["turn_id"], timeout=30)
        assert ended["interrupted"] is False and ended["spoken_text"] == "I am fine, thank you. And you?"
        assert llm.requests[asked]["messages"][-1] == {"role": "user", "content": transcript["text"]}
        timing = await client.wait_event("turn_timing", started["turn_id"])
        assert timing["asr_ms"] == transcript["asr_ms"] and timing["vad_end_ms"] > 0
        assert timing["first_frame_ms"] is not None
    finally:
        await client.close()


async def test_speech_over_the_answer_hangs_up_on_the_llm_and_trims_the_history(voice_chat, how_are_you):
    server, llm = voice_chat
    llm.scripts[:] = [Script(LONG, token_s=0.05), Script("Fine.")]
    client, mic = await talker(server)
    try:
        hung_up, asked = llm.hung_up, len(llm.requests)
        first, _ = await client.chat("Tell me something long.")
        await client.wait_event("speaking_started", timeout=30)
        await client.wait_frames(25)
        await mic.say_file(how_are_you)
        await client.wait_event("reply_paused", timeout=30)
        ended = await client.wait_event("reply_ended", first, timeout=30)
        assert ended["interrupted"] is True and 0 < len(ended["spoken_text"]) < len(LONG)
        await llm.wait_for(hung_up=hung_up + 1)  # the LLM saw its stream closed
        transcript = await client.wait_event("transcript", timeout=30)
        assert (
            "you" in transcript["text"].split()
        )  # pocketsphinx hears espeak-ng loosely: "how are you" can come out "ha you"
        await llm.wait_for(requests=asked + 2)  # the typed question, then the spoken one
        messages = llm.requests[-1]["messages"]
        assert messages[-1] == {"role": "user", "content": transcript["text"]}
        heard = messages[-2]
        assert heard["role"] == "assistant" and LONG.startswith(heard["content"].rstrip("…").rstrip())
        assert len(heard["content"]) < len(LONG)
    finally:
        await client.close()
