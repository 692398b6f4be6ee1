"""Speech recognizers: pocketsphinx in its worker processes (whole turns and streamed turns),
and the OpenAI-compatible engine against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from streamer.audio import decode_file, to_int16
from streamer.voice.asr import NoRecognizer, SphinxRecognizer
from streamer.voice.openai_asr import OpenAIRecognizer


@pytest.fixture(scope="module")
def how_are_you(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("asr") / "how.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), "Good morning, how are you?"], check=True)
    pad = np.zeros(4800, np.int16)
    return np.concatenate([pad, to_int16(decode_file(Path(path), 16000)), pad])


async def test_pocketsphinx_whole_and_streamed_turns_give_the_words(how_are_you):
    asr = SphinxRecognizer(1)
    try:
        assert "are you" in await asr.transcribe(how_are_you)
        stream = asr.try_stream()
        assert stream is not None
        assert asr.try_stream() is None  # its only worker is taken until the stream finishes
        half = len(how_are_you) // 2
        for start in range(0, half, 1600):
            stream.feed(how_are_you[start : min(start + 1600, half)])
        assert isinstance(await stream.partial(), str)
        for start in range(half, len(how_are_you), 1600):
            stream.feed(how_are_you[start : start + 1600])
        assert "are you" in await stream.finish()
        assert "are you" in await asr.transcribe(how_are_you)  # the worker is back
        assert await asr.transcribe(np.zeros(1600, np.int16)) in ("", "in", "a", "the")
    finally:
        await asr.close()


async def test_a_freed_worker_goes_to_the_ended_turn_waiting_for_it_not_to_a_new_stream(how_are_you):
    asr = SphinxRecognizer(1)
    try:
        stream = asr.try_stream()
        assert stream is not None
        waiting = asyncio.create_task(asr.transcribe(how_are_you))  # an ended turn: the worker is taken
        await asyncio.sleep(0)
        stream.feed(how_are_you)
        assert "are you" in await stream.finish()
        assert asr.try_stream() is None  # free, but the waiting turn's: a turn still spoken does not cut in
        assert "are you" in await waiting
        later = asr.try_stream()
        assert later is not None
        await later.finish()
    finally:
        await asr.close()


async def test_no_recognizer_finds_no_words():
    asr = NoRecognizer()
    assert await asr.transcribe(np.ones(16000, np.int16)) == "" and asr.try_stream() is None


async def test_openai_engine_posts_a_wav_with_model_and_language_and_reads_the_text():
    seen: list[dict] = []
    status = {"code": 200}

    async def transcriptions(request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        with wave.open(io.BytesIO(upload.file.read())) as w:
            seen.append(
                {"rate": w.getframerate(), "frames": w.getnframes(), **{k: form[k] for k in ("model", "language")}}
            )
        if status["code"] != 200:
            return web.json_response({"error": "down"}, status=status["code"])
        return web.json_response({"text": " 你好今天天气怎么样 "})

    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    asr = OpenAIRecognizer(f"http://127.0.0.1:{port}/v1/", "sensevoice", "zh", 2)
    try:
        assert await asr.transcribe(np.ones(8000, np.int16)) == "你好今天天气怎么样"
        assert seen == [{"rate": 16000, "frames": 8000, "model": "sensevoice", "language": "zh"}]
        status["code"] = 500
        assert await asr.transcribe(np.ones(8000, np.int16)) == ""  # a failing server: no words, no exception
    finally:
        await asr.close()
        await runner.cleanup()
    closed = OpenAIRecognizer(f"http://127.0.0.1:{port}/v1", "m", "", 1)
    assert await closed.transcribe(np.ones(800, np.int16)) == ""  # refused connection
    await closed.close()
