"""Limits and supervision on a live loopback server: sessions end with a reason, never freeze."""

from __future__ import annotations

import aiohttp

from streamer.headless.client import Client
from streamer.server.keys import SESSIONS

TEMPLATE = "astronaut"


async def test_a_dead_media_pump_closes_its_session_with_an_error_event(server):
    client = Client(server.url)
    try:
        await client.connect(TEMPLATE)
        await client.wait_frames(5)
        session = server.app[SESSIONS].sessions[client.session_id]

        def broken() -> None:
            raise RuntimeError("sabotaged by the test")

        server.loop.call_soon_threadsafe(setattr, session.pump, "_next_unit", broken)
        error = await client.wait_event("error", timeout=15)
        closing = await client.wait_event("closing", timeout=15)
        assert "media-pump" in error["error"] and closing["reason"] == "error"
        async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as r:
            text = await r.text()
        assert 'streamer_task_failures_total{task="media-pump"} 1.0' in text
    finally:
        await client.close()


async def test_one_live_stream_at_a_time_per_session(server):
    client = Client(server.url)
    try:
        await client.connect(TEMPLATE)
        url = f"{server.url}/api/sessions/{client.session_id}/audio?token={client.token}"
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url) as first,
            http.ws_connect(url) as second,
        ):
            await first.send_json({"type": "start", "sample_rate": 16000})
            assert (await first.receive_json())["type"] == "started"
            await second.send_json({"type": "start", "sample_rate": 16000})
            refused = await second.receive_json()
            assert refused["type"] == "error" and refused["status"] == 429
            await first.send_bytes(b"\x00" * 70000)  # over max_ws_bytes (64 KiB): the stream ends there
            too_big = await first.receive_json()
            assert too_big["status"] == 413 and "ended at 0.00 s" in too_big["error"]
            assert (await first.receive_json())["type"] == "ended"
            await first.send_json({"type": "end"})
            assert "no stream is open" in (await first.receive_json())["error"]
    finally:
        await client.close()


async def test_the_websocket_closes_when_its_session_closes(server):
    client = Client(server.url)
    try:
        await client.connect(TEMPLATE)
        url = f"{server.url}/api/sessions/{client.session_id}/audio?token={client.token}"
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await client.call("DELETE", f"/api/sessions/{client.session_id}")
            message = await ws.receive(timeout=15)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
            assert ws.closed or message.data == 1001
        assert client.session_id not in server.app[SESSIONS].sessions
    finally:
        client.session_id = ""
        await client.close()
