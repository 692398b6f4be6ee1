"""A viewer whose link narrows: the session steps down the ladder, and back up once the link
widens, and the picture never freezes for more than a second."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from streamer.config import Settings
from streamer.headless.client import Client
from tests.integration.conftest import live_server

MAX_FREEZE_S = 1.0
LINK_BPS = 450_000
QUEUE_S = 0.5
"""The narrow link's buffer: packets that would wait longer are dropped, as a router would."""


class NarrowLink:
    """The viewer's video arrives through a link of `rate` bits per second: packets queue (their
    arrival is delayed, which the viewer's bandwidth estimate sees) and overflow is dropped."""

    def __init__(self, receiver: Any) -> None:
        self.rate: int | None = None
        self.dropped = 0
        self.delayed = 0
        self._free_at = 0.0
        self._deliver = receiver._handle_rtp_packet
        receiver._handle_rtp_packet = self._handle

    async def _handle(self, packet: Any, arrival_time_ms: int) -> None:
        if self.rate is None:
            await self._deliver(packet, arrival_time_ms)
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._free_at)
        if start - now > QUEUE_S:
            self.dropped += 1
            return
        self._free_at = start + (len(packet.payload) + 40) * 8 / self.rate
        self.delayed += 1
        delay = self._free_at - now
        late = arrival_time_ms + int(delay * 1000)
        loop.call_later(delay, lambda: asyncio.ensure_future(self._deliver(packet, late)))


async def wait_for_step(client: Client, done: Any, timeout: float) -> list[dict[str, Any]]:
    """The session's link quality, read every 12 frames (about 0.5 s) until `done(link)` or
    about `timeout` seconds of frames."""
    seen = []
    for _ in range(int(timeout / 0.5)):
        seen.append((await client.state())["link"])
        if done(seen[-1]):
            return seen
        await client.wait_frames(12)
    raise AssertionError(f"the ladder never got there: {seen[-3:]}")


async def test_a_narrowed_link_steps_down_and_back_up_without_a_long_freeze(cache_dir):
    with live_server(Settings(cache_dir=cache_dir)) as server:
        client = Client(server.url)
        try:
            await client.connect("astronaut")
            await client.wait_frames(25)
            receiver = next(r for r in client.pc.getReceivers() if r.track and r.track.kind == "video")
            link = NarrowLink(receiver)
            settled = lambda q: q["remb_kbps"] is not None and q["remb_kbps"] >= q["bitrate_kbps"] > 0  # noqa: E731
            start = (await wait_for_step(client, settled, timeout=20))[-1]  # the viewer's estimate
            assert start["step"] == 0 and start["steps"] == 3
            link.rate = LINK_BPS
            down = await wait_for_step(client, lambda q: q["step"] >= 1, timeout=30)
            low = down[-1]
            assert low["target_kbps"] < start["target_kbps"] and low["width_scale"] < 1
            link.rate = None
            up = await wait_for_step(client, lambda q: q["step"] == 0, timeout=60)
            assert up[-1]["step_changes"] >= 2
            gaps = np.diff(client.received.video_times[25:])
            assert gaps.max() < MAX_FREEZE_S, f"a {gaps.max():.2f} s freeze"
            assert client.received.size == (512, 512)  # back at full size
            assert link.delayed > 20  # the link really was too narrow: packets queued
            async with client._http.get(server.url + "/metrics") as reply:
                text = await reply.text()
            assert f'streamer_link_ladder_step{{session="{client.session_id}"}} 0.0' in text
            assert f'streamer_link_keyframe_requests{{session="{client.session_id}"}}' in text
        finally:
            await client.close()
