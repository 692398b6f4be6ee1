"""Live servers on loopback for the tests and the benches, and the Chromium they drive.

`live_server` runs the application in a thread of this process (its own event loop);
`serve` starts `python run.py serve` as a subprocess. Both wait until the server is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from aiohttp import web

from streamer.config import ROOT, Settings
from streamer.server.app import create_app, server_options
from streamer.server.keys import STARTUP

READY_TIMEOUT_S = 240.0
SUBPROCESS_PORTS = range(18100, 18200)
"""The ports of `serve`, apart from the random ones `free_port` hands out."""
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


@dataclass
class LiveServer:
    url: str
    app: web.Application
    loop: asyncio.AbstractEventLoop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_port_in(ports: range) -> int:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


@contextlib.contextmanager
def live_server(settings: Settings, on_app: Callable[[web.Application], None] | None = None) -> Iterator[LiveServer]:
    """Serve `settings` on a free loopback port until the block ends; waits for /readyz.

    `on_app` sees the application before it starts (e.g. to add signal handlers)."""
    port = free_port()
    settings = replace(settings, port=port)
    loop = asyncio.new_event_loop()
    app = create_app(settings)
    if on_app is not None:
        on_app(app)
    runner = web.AppRunner(app, access_log=None, **server_options(settings))
    with serve_in_thread(runner, port, loop, name="live-server", timeout=30):
        task = asyncio.run_coroutine_threadsafe(_wait_ready(app), loop)
        task.result(READY_TIMEOUT_S)
        yield LiveServer(f"http://127.0.0.1:{port}", app, loop)


@contextlib.contextmanager
def serve_in_thread(
    runner: web.AppRunner,
    port: int,
    loop: asyncio.AbstractEventLoop,
    name: str,
    timeout: float,
    on_loop: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Run `runner` on 127.0.0.1:`port` on `loop` in a thread of its own until the block ends.

    `on_loop` runs first in that thread (to make objects that belong to the loop)."""
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        if on_loop is not None:
            on_loop()
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    started.wait(timeout)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)


async def _wait_ready(app: web.Application) -> None:
    startup = app[STARTUP]
    assert startup.task is not None
    await startup.task
    if not startup.ready:
        raise RuntimeError(f"server not ready: {startup.phase} {startup.error} {startup.failed}")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-3000:]


@contextlib.contextmanager
def serve(*args: str, env: dict[str, str] | None = None, ready_timeout_s: float = 180.0) -> Iterator[str]:
    """Yields the base URL of a server started with `args` after `serve --port P`.

    `env` adds to the environment (settings as STREAMER_* variables)."""
    port = free_port_in(SUBPROCESS_PORTS)
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "run.py", "serve", "--port", str(port), *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        try:
            deadline = time.monotonic() + ready_timeout_s
            while not _ready(url):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.25)  # returns at once when the server died
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server on {url} not ready (exit {process.poll()}):\n{_tail(log)}")
            yield url
            if process.poll() is not None:
                raise RuntimeError(f"server on {url} stopped during the tests (exit {process.poll()}):\n{_tail(log)}")
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
