"""One live server on loopback for the integration suite, run in a thread with its own loop."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiohttp import web

from streamer.config import Settings
from streamer.server.app import create_app
from streamer.server.keys import STARTUP

READY_TIMEOUT_S = 240.0


@dataclass
class LiveServer:
    url: str
    app: web.Application
    loop: asyncio.AbstractEventLoop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """Serve `settings` on a free loopback port until the block ends; waits for /readyz."""
    port = free_port()
    settings = replace(settings, port=port)
    loop = asyncio.new_event_loop()
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="live-server", daemon=True)
    thread.start()
    started.wait(30)
    try:
        task = asyncio.run_coroutine_threadsafe(_wait_ready(app), loop)
        task.result(READY_TIMEOUT_S)
        yield LiveServer(f"http://127.0.0.1:{port}", app, loop)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


async def _wait_ready(app: web.Application) -> None:
    startup = app[STARTUP]
    assert startup.task is not None
    await startup.task
    if not startup.ready:
        raise RuntimeError(f"server not ready: {startup.phase} {startup.error} {startup.failed}")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def server(cache_dir: Path) -> Iterator[LiveServer]:
    with live_server(Settings(cache_dir=cache_dir, max_sessions=4)) as live:
        yield live


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 3 s of real speech from espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = "Hello there. The quick brown fox jumps over the lazy dog."
    subprocess.run(["espeak-ng", "-s", "170", "-w", str(path), text], check=True)
    return path
