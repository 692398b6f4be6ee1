"""Graceful drain of a real `run.py serve` subprocess, and workers that die with their parent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest

from streamer.client import Client
from tests.integration.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = "astronaut"


def _readyz(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


class Served:
    def __init__(self, cache_dir: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "STREAMER_CACHE_DIR": str(cache_dir), "STREAMER_DRAIN_S": "20"}
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "run.py", "serve", "--port", str(self.port), "--renderer", "lite"],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.log = log

    def wait_ready(self, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        while _readyz(self.url) != 200:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "not ready in time"
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=0.25)

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def served(cache_dir: Path, tmp_path: Path) -> Iterator[Served]:
    server = Served(cache_dir, tmp_path / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


async def test_sigterm_during_speech_finishes_it_says_closing_and_exits_0(served: Served, speech_wav: Path):
    children = served.children()
    assert children, "the server has worker processes"
    client = Client(served.url)
    try:
        await client.connect(TEMPLATE)
        await client.wait_event("welcome_ended", timeout=30)
        reply, _ = await client.speak(speech_wav.read_bytes(), "audio/wav")
        await client.wait_event("speaking_started", reply["utterance_id"], timeout=15)
        served.process.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        status = await loop.run_in_executor(None, _readyz, served.url)
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
    assert code == 0, served.log.read_text()[-3000:]
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left behind: {alive}"


def test_workers_exit_within_5_s_of_their_parent_being_killed(served: Served):
    children = served.children()
    assert children
    served.process.kill()
    served.process.wait()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"workers outlived a SIGKILLed parent: {alive}"
