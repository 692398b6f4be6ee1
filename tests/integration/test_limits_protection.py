"""The paths that protect speech, on a live server with a real worker process: a render that
hangs (the worker is stopped) fails its window at the timeout and the worker is restarted; with
every worker dead the session streams idle and the speech is still heard; speech is rendered
again once the worker is back; an interrupt works in each state."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.config import Settings
from streamer.headless.client import Client
from streamer.server.keys import SESSIONS
from tests.integration.conftest import LiveServer, live_server

TEMPLATE = "astronaut"


@pytest.fixture(scope="module")
def fragile(cache_dir: Path) -> Iterator[LiveServer]:
    with live_server(Settings(cache_dir=cache_dir, render_timeout_s=3.0, max_sessions=2)) as live:
        yield live


def _worker(server: LiveServer):
    return server.app[SESSIONS].pool.workers[0]


async def _state(client: Client) -> dict:
    return await client.call("GET", f"/api/sessions/{client.session_id}")


async def _restarted(server: LiveServer, client: Client, restarts: int) -> None:
    """Wait (watching frames, not sleeping) until the worker has been restarted and runs."""
    worker = _worker(server)
    for _ in range(400):
        if worker.stats.restarts > restarts and worker.alive:
            return
        await client.wait_frames(5)
    raise AssertionError("the worker was not restarted")


async def _speech_is_rendered(client: Client, wav: Path) -> None:
    failures = (await _state(client))["render_failures"]
    reply, _ = await client.speak(wav.read_bytes(), "audio/wav")
    await client.wait_event("speaking_ended", reply["utterance_id"], timeout=60)
    state = await _state(client)
    assert state["render_failures"] == failures and state["speech_units"] > 0


async def test_a_hung_render_fails_its_window_restarts_the_worker_and_speech_resumes(fragile, speech_wav):
    client = Client(fragile.url)
    try:
        await client.connect(TEMPLATE)
        await client.wait_event("welcome_ended", timeout=30)
        worker, restarts = _worker(fragile), _worker(fragile).stats.restarts
        reply, _ = await client.speak(speech_wav.read_bytes(), "audio/wav")
        await client.wait_event("speaking_started", reply["utterance_id"], timeout=15)
        os.kill(worker._process.pid, signal.SIGSTOP)  # its render hangs from here
        ended = await client.wait_event("speaking_ended", reply["utterance_id"], timeout=60)
        assert ended["duration_s"] > 2  # the whole utterance was heard, windows failed or not
        assert (await _state(client))["render_failures"] >= 1  # timed out, not retried
        await _restarted(fragile, client, restarts)

        # Stopped again (its first window hangs), an interrupt still returns to idle at once.
        os.kill(worker._process.pid, signal.SIGSTOP)
        reply, _ = await client.speak(speech_wav.read_bytes(), "audio/wav")
        await client.wait_frames(10)
        interrupted = (await client.interrupt())["interrupted"]
        assert [e["utterance_id"] for e in interrupted] == [reply["utterance_id"]]
        await client.wait_frames(5)
        assert (await _state(client))["state"] == "idle"
        # The interrupt cancelled the hung job, so no timeout restarts the worker: let it go on.
        os.kill(worker._process.pid, signal.SIGCONT)
        await _speech_is_rendered(client, speech_wav)
    finally:
        await client.close()


async def test_with_every_worker_dead_the_session_streams_and_speech_returns(fragile, speech_wav):
    client = Client(fragile.url)
    try:
        await client.connect(TEMPLATE)
        await client.wait_event("welcome_ended", timeout=30)
        worker, restarts = _worker(fragile), _worker(fragile).stats.restarts
        os.kill(worker._process.pid, signal.SIGKILL)
        frames = len(client.received.video_times)
        await client.wait_frames(10)  # idle keeps streaming with no worker at all
        assert len(client.received.video_times) > frames
        if not worker.alive:  # still down: the speech is heard over the still face
            reply, _ = await client.speak(speech_wav.read_bytes(), "audio/wav")
            await client.wait_event("speaking_started", reply["utterance_id"], timeout=15)
            interrupted = (await client.interrupt())["interrupted"]
            assert [e["utterance_id"] for e in interrupted] == [reply["utterance_id"]]
        await _restarted(fragile, client, restarts)
        await _speech_is_rendered(client, speech_wav)
    finally:
        await client.close()
