"""Live servers on loopback for the tests and the benches, and the Chromium they drive.

`live_server` runs the application in a thread of this process (its own event loop) and waits
until it is ready; `run.py serve` as a subprocess is tests/served.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web

from streamer.config import Settings
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
