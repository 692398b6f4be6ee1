"""Talking to the avatar out loud: a headless viewer speaks espeak-ng sentences into its
microphone track over a real peer connection; the server's VAD, turns, pocketsphinx and
barge-in answer. The reply engine is a recording object that follows `ReplyControl`."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.config import Settings
from streamer.core.conversation import Conversation
from streamer.headless.client import Client
from streamer.headless.mic import RATE, MicTrack
from streamer.server.keys import SESSIONS
from tests.integration.conftest import live_server
from tests.support.servers import LiveServer

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def say(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.wav"
    if not path.exists():
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True)
    return path


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("voice")
    return {
        "count": say(folder, "count", "One two three four five."),
        "how": say(folder, "how", "Good morning, how are you?"),
        "answer": say(folder, "answer", "Here is a long answer. " * 6),
    }


@pytest.fixture(scope="module")
def voice_server(cache_dir: Path) -> Iterator[LiveServer]:
    with live_server(Settings(cache_dir=cache_dir, max_sessions=4, asr_workers=2)) as live:
        yield live


class RecordingReply:
    """A reply engine that records its turns (signalled to the test's loop) and interrupts the
    speech engine when told to, as the real one does."""

    def __init__(self, conversation: Conversation, test_loop: asyncio.AbstractEventLoop) -> None:
        self.conversation = conversation
        self.replying = True
        self.interrupts = 0
        self.turns: asyncio.Queue[tuple[str, dict[str, float] | None]] = asyncio.Queue()
        self._loop = test_loop

    async def start_turn(self, text: str, *, timing: dict[str, float] | None = None) -> str:
        if self.replying:
            self.interrupt()
        self._loop.call_soon_threadsafe(self.turns.put_nowait, (text, timing))
        return "r1"

    # What the session asks of its reply engine besides `ReplyControl`:
    def observe(self, event: object) -> None:
        pass

    def interrupt_all(self) -> list:
        return self.conversation.interrupt()

    async def close(self) -> None:
        pass

    def interrupt(self) -> None:
        self.interrupts += 1
        self.replying = False
        self.conversation.interrupt()


async def talker(server: LiveServer) -> tuple[Client, MicTrack, RecordingReply]:
    mic = MicTrack()
    client = Client(server.url)
    await client.connect("astronaut", mic=mic)
    await client.wait_frames(1)
    session = server.app[SESSIONS].sessions[client.session_id]
    reply = RecordingReply(session.conversation, asyncio.get_running_loop())
    server.loop.call_soon_threadsafe(setattr, session, "replier", reply)
    assert session.mic is not None
    return client, mic, reply


def types(client: Client) -> list[str]:
    return [e["type"] for _, e in client.received.events]


async def test_a_spoken_turn_becomes_a_transcript_and_a_reply_turn(voice_server, wavs):
    client, mic, reply = await talker(voice_server)
    try:
        await client.wait_event("welcome_ended", timeout=60)
        await mic.say_file(wavs["count"])
        started = await client.wait_event("user_speech_started")
        ended = await client.wait_event("user_speech_ended")
        transcript = await client.wait_event("transcript")
        assert started["turn_id"] == ended["turn_id"] == transcript["turn_id"]
        assert 1.0 < ended["duration_s"] < 4.0
        assert "three" in transcript["text"]  # pocketsphinx on espeak-ng: the word it always gets
        text, timing = await asyncio.wait_for(reply.turns.get(), 30)
        assert text == transcript["text"]
        assert timing is not None and timing["asr_ms"] == transcript["asr_ms"] > 0
        assert timing["vad_end_ms"] >= voice_server.app[SESSIONS].settings.turn_end_silence_ms * 0.9
        assert "reply_paused" not in types(client)  # nothing was playing
    finally:
        await client.close()


async def test_speech_over_the_answer_pauses_it_then_interrupts_it(voice_server, wavs):
    client, mic, reply = await talker(voice_server)
    try:
        await client.wait_event("welcome_ended", timeout=60)
        answer, _ = await client.speak_file(wavs["answer"])
        await client.wait_event("speaking_started", answer["utterance_id"])
        await mic.say_file(wavs["how"])
        paused = await client.wait_event("reply_paused")
        interrupted = await client.wait_event("interrupted", answer["utterance_id"])
        assert 0 < interrupted["position_s"] < answer["duration_s"]
        assert reply.interrupts == 1
        text, _ = await asyncio.wait_for(reply.turns.get(), 30)
        assert "are you" in text
        seen = types(client)
        assert seen.index("user_speech_started") < seen.index("reply_paused") < seen.index("interrupted")
        assert "speaking_ended" not in seen[seen.index("reply_paused") :]  # it never played to its end
        assert paused["turn_id"] == (await client.wait_event("transcript"))["turn_id"]
    finally:
        await client.close()


async def test_a_short_noise_over_the_answer_does_not_interrupt_it(voice_server, wavs):
    client, mic, reply = await talker(voice_server)
    try:
        await client.wait_event("welcome_ended", timeout=60)
        answer, _ = await client.speak_file(wavs["answer"])
        await client.wait_event("speaking_started", answer["utterance_id"])
        rng = np.random.default_rng(7)
        burst = (rng.standard_normal(RATE // 10) * 9000).clip(-32767, 32767).astype(np.int16)  # 100 ms
        await mic.say(burst)
        ended = await client.wait_event("speaking_ended", answer["utterance_id"], timeout=60)
        assert ended["duration_s"] == pytest.approx(answer["duration_s"], abs=0.05)  # all of it played
        seen = types(client)
        assert "reply_paused" not in seen and "interrupted" not in seen and "user_speech_started" not in seen
        assert reply.interrupts == 0 and reply.turns.empty()
    finally:
        await client.close()


async def test_two_sessions_talking_at_once_keep_their_own_turns(voice_server, wavs):
    (a, mic_a, reply_a), (b, mic_b, reply_b) = await asyncio.gather(talker(voice_server), talker(voice_server))
    try:
        await asyncio.gather(a.wait_event("welcome_ended", timeout=60), b.wait_event("welcome_ended", timeout=60))
        await asyncio.gather(mic_a.say_file(wavs["count"]), mic_b.say_file(wavs["how"]))
        ta, tb = await asyncio.gather(a.wait_event("transcript"), b.wait_event("transcript"))
        assert "three" in ta["text"] and "are you" not in ta["text"]
        assert "are you" in tb["text"] and "three" not in tb["text"]
        assert ta["turn_id"].startswith(a.session_id) and tb["turn_id"].startswith(b.session_id)
        (text_a, _), (text_b, _) = await asyncio.gather(reply_a.turns.get(), reply_b.turns.get())
        assert (text_a, text_b) == (ta["text"], tb["text"])
    finally:
        await asyncio.gather(a.close(), b.close())


@pytest.fixture(scope="module")
def deaf_server(cache_dir: Path) -> Iterator[LiveServer]:
    """Recognition finds no words (`asr = "none"`): every speech over an answer is a false interruption."""
    with live_server(replace(Settings(cache_dir=cache_dir, max_sessions=2), asr="none")) as live:
        yield live


async def test_a_false_interruption_resumes_the_answer_where_it_paused(deaf_server, wavs):
    client, mic, reply = await talker(deaf_server)
    try:
        await client.wait_event("welcome_ended", timeout=60)
        answer, _ = await client.speak_file(wavs["answer"])
        await client.wait_event("speaking_started", answer["utterance_id"])
        await mic.say_file(wavs["count"])
        paused = await client.wait_event("reply_paused")
        resumed = await client.wait_event("reply_resumed")
        assert resumed["turn_id"] == paused["turn_id"] and resumed["paused_s"] > 0
        ended = await client.wait_event("speaking_ended", answer["utterance_id"], timeout=60)
        assert ended["duration_s"] == pytest.approx(answer["duration_s"], abs=0.05)  # nothing skipped
        transcript: dict[str, Any] = await client.wait_event("transcript")
        assert transcript["text"] == ""
        assert "interrupted" not in types(client) and reply.interrupts == 0 and reply.turns.empty()
    finally:
        await client.close()
