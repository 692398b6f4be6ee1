"""TTS engines as PCM streams: espeak-ng (English, Mandarin) and an OpenAI-compatible server."""

from __future__ import annotations

import shutil
from dataclasses import replace

import aiohttp
import numpy as np
import pytest

from streamer.config import Settings
from streamer.errors import BadInput
from streamer.reply.services import ReplyServices
from streamer.reply.speech import EspeakSpeech, OpenAiSpeech, TtsError, make_speech, synthesize
from tests.fake_llm import TTS_SECONDS_PER_CHAR, fake_llm

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


async def chunks(speech, text: str) -> list[bytes]:
    return [chunk async for chunk in speech.stream(text)]


@needs_espeak
@pytest.mark.parametrize(
    ("voice", "text"), [("en-us", "Hello there, how are you today?"), ("cmn", "你好！我是数字人。")]
)
async def test_espeak_streams_speech(voice, text):
    got = await chunks(EspeakSpeech(voice), text)
    pcm = np.frombuffer(b"".join(got), "<i2")
    assert all(len(c) % 2 == 0 for c in got) and len(got) > 1  # it arrives in pieces
    assert 0.5 < len(pcm) / 22050 < 6 and np.abs(pcm).max() > 3000


def test_a_voice_cannot_be_an_option():
    with pytest.raises(BadInput):
        EspeakSpeech("--help")


async def test_openai_speech_streams_whole_samples():
    with fake_llm() as server:
        async with aiohttp.ClientSession() as http:
            speech = OpenAiSpeech(http, server.url, "tts-1", "alloy", "sk-tts")
            text = "Hello there."
            got = await chunks(speech, text)
            assert speech.sample_rate == 24000 and all(len(c) % 2 == 0 for c in got)
            assert len(b"".join(got)) == 2 * int(len(text) * TTS_SECONDS_PER_CHAR * 24000)
            assert server.speech_requests[0] == {
                "model": "tts-1", "voice": "alloy", "response_format": "pcm", "input": text
            }  # fmt: skip
            assert len(await synthesize(speech, " Hi. ")) > 0


async def test_the_engine_follows_the_settings_and_the_template(tmp_path):
    (tmp_path / "laoshi.json").write_text('{"persona": "You teach.", "voice": "cmn"}')
    settings = Settings(templates_dir=tmp_path, tts="espeak", llm_system_prompt="Be brief.")
    services = ReplyServices(settings)
    try:
        assert services.persona("laoshi").voice == "cmn" and services.persona("laoshi").prompt == "You teach."
        assert services.persona("other").voice == "en-us" and services.persona("other").prompt == "Be brief."
        assert isinstance(services.speech("cmn"), EspeakSpeech)
        openai = replace(settings, tts="openai", tts_url="http://127.0.0.1:9/v1")
        assert isinstance(make_speech(openai, services.http(), "alloy"), OpenAiSpeech)
        assert not services.available and ReplyServices(replace(settings, llm_url="http://x/v1")).available
    finally:
        await services.close()


@needs_espeak
async def test_a_warmed_espeak_speaks_with_its_spare_and_close_ends_it():
    speech = EspeakSpeech("en-us")
    await speech.warm()
    await speech.warm()  # one spare at a time
    spare = speech._spare
    assert spare is not None and spare.returncode is None
    got = await chunks(speech, "Hello there, how are you?")
    assert spare.returncode is not None and len(b"".join(got)) > 22050  # the spare spoke
    await speech.warm()
    assert speech._spare is not None and speech._spare is not spare
    await speech.close()
    assert speech._spare is None


@needs_espeak
async def test_an_unknown_espeak_voice_is_a_clear_tts_error():
    with pytest.raises(TtsError, match="does not exist"):
        await chunks(EspeakSpeech("xyz"), "Hello.")
