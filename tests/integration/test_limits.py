"""Limits and supervision on a live loopback server: sessions end with a reason, never freeze."""

from __future__ import annotations

import aiohttp

from streamer.client import Client
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
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/metrics") as r:
                text = await r.text()
        assert 'streamer_task_failures_total{task="media-pump"} 1.0' in text
    finally:
        await client.close()
