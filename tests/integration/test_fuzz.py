"""Fuzzing in the suite: generated requests to every route and the audio WebSocket (bench/fuzz.py's
strategies, a fixed seed, a bounded count). Always a documented 4xx with a JSON sentence, never
a 5xx or a hang, and an open session keeps streaming and speaking."""

from __future__ import annotations

import asyncio
import os
import socket

import aiohttp
import pytest
from aiohttp import web

from bench import fuzz
from bench.common import viewer_offer
from streamer.errors import BadInput
from streamer.headless.client import Client
from streamer.metrics import Metrics
from streamer.server.decoding import Decoders
from streamer.server.http import errors
from streamer.server.keys import METRICS, SESSIONS

SEED = 20261202
HTTP_EXAMPLES = 150
WS_EXAMPLES = 15


async def _close_others(server, keep: str) -> None:
    manager = server.app[SESSIONS]
    for session_id in [s for s in list(manager.sessions) if s != keep]:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(manager.close(session_id), server.loop))


async def test_generated_requests_get_json_4xx_and_the_session_keeps_streaming(server, speech_wav):
    viewer = Client(server.url)
    try:
        await viewer.connect("astronaut")
        await viewer.wait_frames(5)
        target = fuzz.Target(server.url, viewer.session_id, viewer.token)
        real = fuzz.Corpus(await viewer_offer(), fuzz.audio_corpus())
        assert {"audio/wav", "audio/ogg", "audio/webm", "audio/pcm;rate=16000", "audio/L16;rate=16000"} <= set(
            real.audio
        )
        tally = fuzz.Tally()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, fuzz.http_batch, target, real, tally, HTTP_EXAMPLES, SEED, True)
        await loop.run_in_executor(None, fuzz.ws_batch, target, tally, WS_EXAMPLES, SEED, True)
        assert tally.tried >= HTTP_EXAMPLES and not tally.server_errors and not tally.hangs, tally
        assert any(int(k) in (400, 404, 415) for k in tally.statuses), tally.statuses  # it reached the handlers
        await _close_others(server, viewer.session_id)

        # The session under fire still streams, and still speaks.
        frames = len(viewer.received.video_times)
        await viewer.wait_frames(10)
        assert len(viewer.received.video_times) > frames
        await viewer.call("POST", f"/api/sessions/{viewer.session_id}/interrupt")
        reply, _ = await viewer.speak(speech_wav.read_bytes(), "audio/wav")
        await viewer.wait_event("speaking_ended", reply["utterance_id"], timeout=60)
    finally:
        await viewer.close()


async def test_a_decoder_that_crashes_costs_a_400_not_the_server():
    decoders = Decoders(processes=1)
    try:
        with pytest.raises(BadInput, match="crashed"):
            await decoders.run(os._exit, 3)  # what a segfaulting FFmpeg looks like from here
        assert decoders.crashes == 1
        audio48k, audio16k = await decoders.speech(bytes(3200), "audio/pcm;rate=16000", 5.0)
        assert len(audio48k) == 4800 and len(audio16k) == 1600  # a fresh pool took over
    finally:
        decoders.close()


async def test_a_fault_stays_a_counted_500_never_a_400():
    """No catch-all turns a bug into a 4xx: only named errors are 4xx; the rest is a 500, counted."""

    async def buggy(request: web.Request) -> web.Response:
        raise KeyError("a bug")

    async def refused(request: web.Request) -> web.Response:
        raise BadInput("a named refusal")

    app = web.Application(middlewares=[errors])
    app[METRICS] = Metrics()
    app.router.add_get("/bug", buggy)
    app.router.add_get("/bad", refused)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/bug") as r:
                assert r.status == 500 and "internal error" in (await r.json())["error"]
            async with http.get(f"http://127.0.0.1:{port}/bad") as r:
                assert r.status == 400 and (await r.json())["error"] == "a named refusal"
        counted = app[METRICS].http_errors
        assert counted.labels("500")._value.get() == 1 and counted.labels("400")._value.get() == 1
    finally:
        await runner.cleanup()


async def test_text_with_a_lone_surrogate_is_a_400(server):
    viewer = Client(server.url)
    try:
        await viewer.connect("astronaut")
        body = b'{"text": "hello \\ud800 there"}'  # valid JSON, not valid Unicode
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{server.url}/api/sessions/{viewer.session_id}/say",
                data=body,
                headers={"Authorization": f"Bearer {viewer.token}", "Content-Type": "application/json"},
            ) as r,
        ):
            assert r.status == 400 and "Unicode" in (await r.json())["error"]
    finally:
        await viewer.close()
