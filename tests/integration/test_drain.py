"""Graceful drain of a real `run.py serve` subprocess, and workers that die with their parent."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest

from streamer.headless.client import Client
from tests.served import Served, readyz

TEMPLATE = "astronaut"


@pytest.fixture
def served(cache_dir: Path) -> Iterator[Served]:
    server = Served("--renderer", "lite", env={"STREAMER_CACHE_DIR": str(cache_dir), "STREAMER_DRAIN_S": "20"})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop(kill=True)


def workers(server: Served) -> list[psutil.Process]:
    return psutil.Process(server.process.pid).children(recursive=True)


async def test_sigterm_during_speech_finishes_it_says_closing_and_exits_0(served: Served, speech_wav: Path):
    children = workers(served)
    assert children, "the server has worker processes"
    client = Client(served.url)
    try:
        await client.connect(TEMPLATE)
        await client.wait_event("welcome_ended", timeout=30)
        reply, _ = await client.speak(speech_wav.read_bytes(), "audio/wav")
        await client.wait_event("speaking_started", reply["utterance_id"], timeout=15)
        served.process.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        status = await loop.run_in_executor(None, readyz, served.url)
        assert status == 503  # not admitting: a load balancer moves new viewers elsewhere
        async with aiohttp.ClientSession() as http:
            async with http.get(served.url + "/readyz") as r:
                assert (await r.json())["phase"] == "draining"
            body = {"template": TEMPLATE, "sdp": "v=0\r\n", "type": "offer"}
            async with http.post(served.url + "/api/sessions", json=body) as r:
                assert r.status == 503 and "shutting down" in (await r.json())["error"]
        ended = await client.wait_event("speaking_ended", reply["utterance_id"], timeout=30)
        closing = await client.wait_event("closing", timeout=30)
        kinds = [e["type"] for _, e in client.received.events]
        assert kinds.index("speaking_ended") < kinds.index("closing")
        assert ended["duration_s"] > 2 and closing["reason"] == "draining"
    finally:
        await client.close()
    code = await asyncio.get_running_loop().run_in_executor(None, served.process.wait, 60)
    assert code == 0, served.log()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left behind: {alive}"


def test_workers_exit_within_5_s_of_their_parent_being_killed(served: Served):
    children = workers(served)
    assert children
    served.process.kill()
    served.process.wait()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"workers outlived a SIGKILLed parent: {alive}"
