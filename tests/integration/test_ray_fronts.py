"""Several signalling servers on one Ray cluster: a head started as its own process, fronts
(`run.py serve --pool ray --ray-address …`) that join it by address (token authentication on)
and share its two named render actors: one EDF queue and one admission for all of them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import numpy as np
import psutil
import pytest

from streamer.headless.client import Client
from streamer.headless.measure import av_offset_ms
from tests.integration.ray_cluster import ROOT, Front, RayHead, get
from tests.support.servers import free_port

pytest.importorskip("ray")
pytestmark = pytest.mark.ray

TEMPLATE = "astronaut"
SLOW_SIM = {"STREAMER_SIM_PER_FRAME_MS": "20"}
"""40 ms + 20 ms a frame, 16 a call: two devices carry three speaking sessions at 80 %."""
LONG = "audio/L16;rate=16000"


def long_speech(seconds: float) -> bytes:
    """Voiced syllables with pauses, big-endian s16 (audio/L16): a long upload."""
    t = np.arange(int(seconds * 16000)) / 16000
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.7 * t) > -0.8)
    voice = 0.3 * syllables * (np.sin(2 * np.pi * 140 * t) + 0.4 * np.sin(2 * np.pi * 280 * t))
    return (voice * 32767).astype(">i2").tobytes()


@pytest.fixture(scope="module")
def cluster(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RayHead, Front, Front]]:
    logs = tmp_path_factory.mktemp("ray-fronts")
    head = RayHead(logs / "head.log")
    fronts: list[Front] = []
    try:
        fronts = [Front(head, cache_dir, logs / f"{name}.log", **SLOW_SIM) for name in "ab"]
        for front in fronts:
            front.wait_ready()
        yield head, fronts[0], fronts[1]
    finally:
        for front in fronts:
            front.stop()
        head.stop()


async def until(what: Callable[[], bool], pace: Callable[[], Awaitable[object]], timeout_s: float = 60) -> None:
    """Until `what` holds, looking again after each `pace` (frames arriving, a process's wait)."""
    deadline = time.monotonic() + timeout_s
    while not what():
        assert time.monotonic() < deadline, "the cluster never got there"
        await pace()


def clusters(front: Front) -> list[dict]:
    return [d["cluster"] for d in front.devices()]


async def speaking_client(url: str) -> Client:
    client = Client(url)
    await client.connect(TEMPLATE)
    await client.wait_event("welcome_ended", timeout=60)
    return client


async def test_two_fronts_share_two_actors_speak_in_sync_and_a_third_makes_none(
    cluster, cache_dir, tmp_path, speech_wav
):
    head, a, b = cluster
    pids = {c["pid"] for c in clusters(a)}
    assert len(pids) == 2 and {c["pid"] for c in clusters(b)} == pids  # two actors, the same for both
    assert all(len(c["fronts"]) >= 2 for c in clusters(b))
    clients = [await speaking_client(a.url), await speaking_client(b.url)]
    try:
        sent = [await c.speak(speech_wav.read_bytes(), "audio/wav") for c in clients]
        for client, (reply, at) in zip(clients, sent, strict=True):
            await client.wait_event("speaking_ended", reply["utterance_id"], timeout=60)
            r = client.received
            idle = [f for t, f in zip(r.video_times, r.frames, strict=True) if t < at][-1].astype(np.int16)
            offset = av_offset_ms(r, at, time.monotonic() + 0.3, idle)
            assert offset is not None and abs(offset) <= 80  # in sync on both fronts
    finally:
        for client in clients:
            await client.close()
    third = Front(head, cache_dir, tmp_path / "c.log", **SLOW_SIM)
    try:
        third.wait_ready()
        assert {c["pid"] for c in clusters(third)} == pids  # no new actor
        assert all(len(c["fronts"]) >= 3 for c in clusters(third))
    finally:
        third.stop()


async def test_a_first_window_from_b_goes_ahead_of_a_long_uploads(cluster, speech_wav):
    _, a, b = cluster
    uploads = [await speaking_client(a.url) for _ in range(2)]
    viewer = await speaking_client(b.url)
    try:
        for client in uploads:
            reply, _ = await client.speak(long_speech(30), LONG)
            await client.wait_event("speaking_started", reply["utterance_id"], timeout=30)
        front_a, front_b = clusters(a)[0]["front"], clusters(b)[0]["front"]
        await until(lambda: any(c["jobs_by_front"].get(front_a) for c in clusters(b)), lambda: viewer.wait_frames(5))
        reply, _ = await viewer.speak(speech_wav.read_bytes(), "audio/wav")
        await viewer.wait_event("speaking_started", reply["utterance_id"], timeout=30)
        # B's first window started while A's uploads, sent before it, still waited on the actor.
        await until(lambda: any(c["ahead_by_front"].get(front_b) for c in clusters(b)), lambda: viewer.wait_frames(5))
        await viewer.wait_event("speaking_ended", reply["utterance_id"], timeout=60)
    finally:
        for client in [*uploads, viewer]:
            await client.close()


async def test_an_actor_killed_mid_stream_restarts_and_both_fronts_carry_on(cluster, speech_wav):
    _, a, b = cluster
    victim = clusters(a)[0]["pid"]
    clients = [await speaking_client(a.url), await speaking_client(b.url)]
    try:
        replies = [(await c.speak(speech_wav.read_bytes(), "audio/wav"))[0] for c in clients]
        for client, reply in zip(clients, replies, strict=True):
            await client.wait_event("speaking_started", reply["utterance_id"], timeout=30)
        os.kill(victim, signal.SIGKILL)
        for client, reply in zip(clients, replies, strict=True):
            await client.wait_event("speaking_ended", reply["utterance_id"], timeout=60)
        for front in (a, b):  # Ray restarts the actor; each front sees it answer again
            await until(
                lambda f=front: f.devices()[0]["restarts"] >= 1 and clusters(f)[0]["pid"] != victim,
                lambda: clients[0].wait_frames(5),
            )
            assert front.devices()[0]["alive"] and clusters(front)[0]["pid"] != victim
        replies = [(await c.speak(speech_wav.read_bytes(), "audio/wav"))[0] for c in clients]
        for client, reply in zip(clients, replies, strict=True):
            await client.wait_event("speaking_ended", reply["utterance_id"], timeout=60)
    finally:
        for client in clients:
            await client.close()


async def _refused(url: str) -> tuple[int, str | None]:
    body = {"template": TEMPLATE, "sdp": "v=0\r\n", "type": "offer"}
    async with aiohttp.ClientSession() as http, http.post(url + "/api/sessions", json=body) as r:
        return r.status, r.headers.get("Retry-After")


async def test_sessions_past_the_cluster_capacity_get_429_on_either_front(cluster):
    _, a, b = cluster
    open_load = lambda f: f.devices() and _stats(f)["render"]["load"]["open"]  # noqa: E731
    await until(lambda: open_load(a) == 0 and open_load(b) == 0, lambda: asyncio.sleep(0.2))
    capacity = _stats(a)["render"]["speaking_sessions_capacity"]
    assert capacity == 3 and _stats(b)["render"]["speaking_sessions_capacity"] == 3
    clients = []
    try:
        for front in (a, b, a):  # the cluster's three, across the fronts
            clients.append(Client(front.url))
            await clients[-1].connect(TEMPLATE)
        for front in (b, a):
            assert await _refused(front.url) == (429, "10")
    finally:
        for client in clients:
            await client.close()


def _stats(front: Front) -> dict:
    status, body = get(front.url, "/api/stats")
    assert status == 200
    return body


async def test_a_front_killed_leaves_the_other_streaming_and_its_jobs_cancelled(cluster, speech_wav):
    _, a, b = cluster
    upload = await speaking_client(a.url)
    viewer = await speaking_client(b.url)
    try:
        reply, _ = await upload.speak(long_speech(30), LONG)
        await upload.wait_event("speaking_started", reply["utterance_id"], timeout=30)
        front_a, pids = clusters(a)[0]["front"], {c["pid"] for c in clusters(a)}
        await until(lambda: any(c["jobs_by_front"].get(front_a) for c in clusters(b)), lambda: viewer.wait_frames(5))
        a.process.send_signal(signal.SIGKILL)
        reply, _ = await viewer.speak(speech_wav.read_bytes(), "audio/wav")
        await viewer.wait_event("speaking_ended", reply["utterance_id"], timeout=60)
        gone = lambda: all(front_a not in c["fronts"] and not c["jobs_by_front"].get(front_a) for c in clusters(b))  # noqa: E731
        await until(gone, lambda: viewer.wait_frames(5))
        assert {c["pid"] for c in clusters(b)} == pids  # the actors live on
        reply, _ = await viewer.speak(speech_wav.read_bytes(), "audio/wav")
        await viewer.wait_event("speaking_ended", reply["utterance_id"], timeout=60)
    finally:
        await viewer.close()
        await upload.close()


def test_actors_stop_removes_the_shared_actors(cluster):
    head, _, b = cluster
    pids = {c["pid"] for c in clusters(b)}
    done = subprocess.run(
        [sys.executable, "run.py", "actors", "--stop", "--ray-address", head.address],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(json.loads(done.stdout.strip().splitlines()[-1])["stopped"]) == ["render-sim-0", "render-sim-1"]
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).wait(timeout=30)  # the actors' processes end
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_front_with_no_head_at_its_address_exits_at_once_with_the_reason():
    args = ["--pool", "ray", "--ray-address", f"127.0.0.1:{free_port()}", "--renderer", "sim", "--devices", "sim:0"]
    done = subprocess.run(
        [sys.executable, "run.py", "serve", "--port", str(free_port()), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "no Ray head answers at 127.0.0.1:" in done.stderr.splitlines()[-1]
