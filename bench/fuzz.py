"""Fuzz every HTTP route and the audio WebSocket of a live server; prints one JSON object.

    python bench/fuzz.py --minutes 10 [--seed 1]

Starts `run.py serve` (lite renderer) as its own process with one session kept open, then
sends hypothesis-generated requests: every route, methods, headers, content types, query
strings, JSON bodies, mutated real SDP offers, corrupt audio of every accepted type, and
WebSocket message sequences. The property, always: a documented 4xx with a JSON sentence,
never a 5xx, never a hang, and the server and the open session keep streaming. Reports inputs
tried, 5xx, hangs and crashes (server exits). The uploads include every container, codec and
channel layout PyAV can write (bench/audio_layouts.py: 8-channel WAVs once crashed the
decoder). The test suite runs the same strategies, bounded
and with a fixed seed (tests/integration/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _checkout  # noqa: F401
from bench.common import machine, viewer_offer
from bench.fuzz_corpus import Corpus, audio_corpus
from bench.fuzz_strategies import TEMPLATE, Request, Target, requests, ws_messages
from tests.served import Served

HANG_S = 20.0
"""A request with no answer after this long counts as a hang."""
STATUSES = {400, 401, 403, 404, 405, 408, 413, 415, 429, 503}
"""The 4xx/5xx a caller may be answered with (docs/api.md); 503 only while not ready."""


@dataclass
class Tally:
    tried: int = 0
    server_errors: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    bad_answers: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def note(self, status: int) -> None:
        self.tried += 1
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1


# --- checks ---------------------------------------------------------------------------------


def send(target: Target, request: Request, tally: Tally) -> None:
    """Send one request; record a 5xx, a hang, or an answer that is not a JSON sentence."""
    conn = http.client.HTTPConnection(*target.hostport, timeout=HANG_S)
    label = f"{request.method} {request.path[:120]} {request.headers.get('Content-Type', '')}"
    try:
        headers = {**request.headers, "Content-Length": str(len(request.body))}
        conn.request(request.method, request.path, body=request.body, headers=headers)
        response = conn.getresponse()
        body = response.read()
    except TimeoutError:
        tally.hangs.append(label)
        return
    finally:
        conn.close()
    tally.note(response.status)
    if response.status >= 500 and response.status != 503:
        tally.server_errors.append(f"{response.status} {label}: {body[:200]!r}")
    elif response.status >= 400 and request.method != "HEAD":
        try:
            message = json.loads(body)["error"]
            assert isinstance(message, str) and message
        except (ValueError, KeyError, TypeError, AssertionError):
            tally.bad_answers.append(f"{response.status} {label}: {body[:200]!r}")


async def send_ws(target: Target, messages: list[str | bytes], tally: Tally) -> None:
    """Play `messages` on the audio socket; every answer must be JSON, the close code not 1011."""
    import aiohttp

    url = f"{target.url}/api/sessions/{target.session_id}/audio?token={target.token}"
    async with (
        aiohttp.ClientSession() as http_,
        http_.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws,
    ):
        for message in messages:
            await (ws.send_str(message) if isinstance(message, str) else ws.send_bytes(message))
        await ws.send_str('{"type":"interrupt"}')  # leave the session with nothing open
        await ws.close()
        if ws.close_code not in (None, 1000, 1001):
            tally.server_errors.append(f"websocket closed {ws.close_code}")
    tally.note(101)


# --- the long run ---------------------------------------------------------------------------


def _failures(tally: Tally) -> int:
    return len(tally.server_errors) + len(tally.hangs) + len(tally.bad_answers)


def _raise_new(tally: Tally, before: int) -> None:
    if _failures(tally) > before:
        raise AssertionError((tally.server_errors + tally.hangs + tally.bad_answers)[-1])


def http_batch(target: Target, real: Corpus, tally: Tally, examples: int, seed: int, strict: bool = False) -> None:
    """`examples` generated HTTP requests, recorded in `tally`; `strict` (the test suite) raises
    at the first failure, so hypothesis shrinks it to a minimal example."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as with_seed

    @with_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(requests(target, real))
    def batch(request: Request) -> None:
        before = _failures(tally)
        send(target, request, tally)
        if strict:
            _raise_new(tally, before)

    with _others_use_random():
        batch()


@contextmanager
def _others_use_random() -> Iterator[None]:
    """Hypothesis warns when `random`'s state moves during an example; here the watched session's
    aiortc (another thread) and aiohttp's WebSocket masks move it, not the strategies."""
    from hypothesis.errors import HypothesisDeprecationWarning

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Do not use the `random` module", category=HypothesisDeprecationWarning
        )
        yield


def ws_batch(target: Target, tally: Tally, examples: int, seed: int, strict: bool = False) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as with_seed

    @with_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(ws_messages())
    def batch(messages: list[str | bytes]) -> None:
        before = _failures(tally)
        try:
            asyncio.run(asyncio.wait_for(send_ws(target, messages, tally), HANG_S))
        except TimeoutError:
            tally.hangs.append(f"websocket {messages[:3]!r}")
        if strict:
            _raise_new(tally, before)

    with _others_use_random():
        batch()


def _logged_errors(log: str) -> list[str]:
    """The last lines of each traceback the server logged (what a 5xx came from)."""
    out = []
    for block in log.split("Traceback (most recent call last):")[1:]:
        lines = [line for line in block.splitlines() if line.strip()]
        tail = next((i for i, line in enumerate(lines) if not line.startswith(" ")), len(lines) - 1)
        out.append("\n".join(lines[max(0, tail - 4) : tail + 1]))
    return out


async def _fuzz(url: str, minutes: float, seed: int, tally: Tally, server: Served) -> dict[str, Any]:
    from streamer.headless.client import Client

    viewer = Client(url)
    await viewer.connect(TEMPLATE)
    await viewer.wait_frames(5)
    target = Target(url, viewer.session_id, viewer.token)
    real = Corpus(await viewer_offer(), audio_corpus())
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + minutes * 60
    rounds, streaming = 0, True
    while time.monotonic() < deadline and server.process.poll() is None:
        await loop.run_in_executor(None, http_batch, target, real, tally, 100, seed + rounds)
        await loop.run_in_executor(None, ws_batch, target, tally, 10, seed + rounds)
        rounds += 1
        try:
            await viewer.wait_frames(5, timeout=30)  # the open session still streams: 5 more frames
        except TimeoutError:
            streaming = False
            break
    await viewer.close()
    return {"rounds": rounds, "session_kept_streaming": streaming, "formats": sorted(real.audio)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    tally = Tally()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"STREAMER_CACHE_DIR": str(Path(tmp) / "cache"), "STREAMER_LOG_LEVEL": "WARNING"}
        server = Served("--renderer", "lite", env={**env, "STREAMER_IDLE_TIMEOUT_S": "0"})
        try:
            server.wait_ready()
            run = asyncio.run(_fuzz(server.url, args.minutes, args.seed, tally, server))
            crashed = server.process.poll() is not None
            logged = _logged_errors(server.log(last=None))
        finally:
            server.stop()
    return {
        "bench": "fuzz",
        "machine": machine(),
        "minutes": args.minutes,
        "seed": args.seed,
        "seconds": round(time.monotonic() - started, 1),
        "inputs_tried": tally.tried,
        "5xx": len(tally.server_errors),
        "hangs": len(tally.hangs),
        "crashes": int(crashed),
        "non_json_errors": len(tally.bad_answers),
        "statuses": tally.statuses,
        "examples": (tally.server_errors + tally.hangs + tally.bad_answers)[:5],
        "server_tracebacks": logged[:5],
        **run,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
