"""Admission on a live server with a sim device: the session past capacity gets 429 with
Retry-After and a sentence, while the admitted one speaks with no missed deadline."""

from __future__ import annotations

import aiohttp
import pytest

from streamer.config import Settings
from streamer.headless.client import Client
from tests.integration.conftest import live_server

TEMPLATE = "astronaut"


@pytest.fixture(scope="module")
def small_server(cache_dir):
    # 32 frames in 40 + 32 × 8 ms: 108 frames/s; at a 20 % threshold, room for one speaking
    # session (the window ramp of an upload needs a device several times faster than real time).
    settings = Settings(
        cache_dir=cache_dir,
        renderer="sim",
        devices=("sim:0",),
        sim_fixed_ms=40.0,
        sim_per_frame_ms=8.0,
        admission_threshold=0.2,
        max_sessions=4,
    )
    with live_server(settings) as live:
        yield live


async def offer(url: str) -> aiohttp.ClientResponse:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "/api/sessions", json={"template": TEMPLATE, "sdp": "v=0", "type": "offer"}) as r,
    ):
        await r.read()
        return r


async def test_the_session_past_capacity_is_refused_and_the_admitted_one_keeps_its_deadlines(small_server, speech_wav):
    client = Client(small_server.url)
    await client.connect(TEMPLATE)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                small_server.url + "/api/sessions", json={"template": TEMPLATE, "sdp": "v=0", "type": "offer"}
            ) as r:
                body = await r.json()
                assert r.status == 429 and int(r.headers["Retry-After"]) > 0
                assert "capacity" in body["error"] and "1 are open" in body["error"]
            async with http.get(small_server.url + "/readyz") as r:
                ready = await r.json()
                assert ready["ready"] and ready["at_capacity"] is True
        await client.wait_event("welcome_ended", timeout=60)
        reply, _ = await client.speak(speech_wav.read_bytes(), "audio/wav")
        await client.wait_event("speaking_ended", reply["utterance_id"], timeout=60)
        stats = await client.call("GET", "/api/stats")
        render = stats["render"]
        assert render["refused_sessions"] == 1 and render["at_capacity"]
        assert render["speaking_sessions_capacity"] == 1 and 90 < render["capacity_fps"] <= 108.2
        assert render["deadline_misses"] == 0 and stats["sessions"]["list"][0]["stalls"] == 0
        assert stats["devices"][0]["jobs"] >= 3 and stats["devices"][0]["timeouts"] == 0
        async with aiohttp.ClientSession() as http, http.get(small_server.url + "/metrics") as r:
            text = await r.text()
        assert "streamer_render_capacity_fps" in text and "streamer_sessions_refused 1.0" in text
    finally:
        await client.close()
