"""A fake OpenAI-compatible server on loopback: streamed chat completions (SSE) and `pcm` speech.

A real aiohttp server in a thread of its own (its own event loop), so the server under test,
in another thread, talks to it over real sockets. Each chat request takes the next `Script`
(the last one repeats): its text, sent a token at a time after `first_token_s`, one token every
`token_s`; it may stall after some tokens, fail mid-stream, or answer an HTTP error. The server
records every request body and counts the clients that hung up before the answer's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from tests.support.servers import free_port, serve_in_thread

TTS_RATE = 24_000
TTS_SECONDS_PER_CHAR = 0.06


@dataclass
class Script:
    text: str = "Hello there. I am the fake model."
    first_token_s: float = 0.0
    token_s: float = 0.0
    stall_after: int | None = None
    """Tokens sent before it goes quiet (the connection stays open)."""
    fail_after: int | None = None
    """Tokens sent before it drops the connection without [DONE]."""
    status: int = 200
    malformed_after: int | None = None
    """Tokens sent before a chunk that is not JSON."""


def tokens(text: str) -> list[str]:
    """Words with their trailing space, each CJK character a token of its own."""
    return re.findall(r"[\u2e80-\u9fff\uff00-\uffef]|[^\s\u2e80-\u9fff\uff00-\uffef]+\s*|\s+", text)


@dataclass
class FakeLlm:
    scripts: list[Script] = field(default_factory=lambda: [Script()])
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Every chat request's JSON body, in order (and its Authorization header as `_auth`)."""
    hung_up: int = 0
    """Clients that closed their answer's stream before its end."""
    hung_up_at: list[float] = field(default_factory=list)
    """When each hang-up was seen (time.monotonic(), for the benches)."""
    speech_requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    loop: asyncio.AbstractEventLoop | None = None
    _changed: asyncio.Condition | None = None

    def script(self) -> Script:
        """The next script; the last one stays for every later request."""
        return self.scripts.pop(0) if len(self.scripts) > 1 else self.scripts[0]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        body["_auth"] = request.headers.get("Authorization")
        self.requests.append(body)
        script = self.script()
        await self._notify()
        if script.status != 200:
            return web.json_response({"error": {"message": "scripted failure"}}, status=script.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await self._stream(request, response, script)
        except (ConnectionResetError, ConnectionError):
            self.hung_up_at.append(time.monotonic())
            self.hung_up += 1
            await self._notify()
        return response

    async def _stream(self, request: web.Request, response: web.StreamResponse, script: Script) -> None:
        await asyncio.sleep(script.first_token_s)
        for i, token in enumerate(tokens(script.text)):
            if i == script.stall_after:
                await self._until_hung_up(request)
            if i == script.malformed_after:
                await response.write(b"data: {not json\n\n")
            if i == script.fail_after:
                assert request.transport is not None
                request.transport.close()
                return
            if i:
                await asyncio.sleep(script.token_s)
            await response.write(_chunk({"content": token}, None))
        await response.write(_chunk({}, "stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()

    async def _until_hung_up(self, request: web.Request) -> None:
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.01)  # the server's own watch on its socket, not a test's wait
        raise ConnectionResetError

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.speech_requests.append(body)
        if body.get("response_format") != "pcm":
            return web.json_response({"error": "only pcm"}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        pcm = speech_like(len(str(body.get("input", ""))) * TTS_SECONDS_PER_CHAR)
        for start in range(0, len(pcm), 4801):  # odd sizes: the client must keep whole samples
            await response.write(pcm[start : start + 4801])
        await response.write_eof()
        return response

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    async def _wait(self, hung_up: int, requests: int) -> None:
        assert self._changed is not None
        async with self._changed:
            await self._changed.wait_for(lambda: self.hung_up >= hung_up and len(self.requests) >= requests)

    async def wait_for(self, hung_up: int = 0, requests: int = 0, timeout: float = 10.0) -> None:
        """From the test's loop: until `hung_up` clients hung up and `requests` requests came."""
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(self._wait(hung_up, requests), self.loop)
        await asyncio.wait_for(asyncio.wrap_future(future), timeout)


def speech_like(seconds: float) -> bytes:
    """s16le at 24 kHz: a 200 Hz tone whose loudness rises and falls four times a second."""
    t = np.arange(int(seconds * TTS_RATE)) / TTS_RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (np.sin(2 * np.pi * 200 * t) * envelope * 12000).astype("<i2").tobytes()


def _chunk(delta: dict[str, Any], finish: str | None) -> bytes:
    body = {"id": "fake", "object": "chat.completion.chunk", "model": "fake",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return f"data: {json.dumps(body)}\n\n".encode()


@contextlib.contextmanager
def fake_llm(*scripts: Script) -> Iterator[FakeLlm]:
    """Serve a FakeLlm on a free loopback port until the block ends; `url` ends in /v1."""
    fake = FakeLlm(scripts=list(scripts) or [Script()])
    port = free_port()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake._chat)
    app.router.add_post("/v1/audio/speech", fake._speech)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=False)

    def make_condition() -> None:
        fake._changed = asyncio.Condition()

    with serve_in_thread(runner, port, loop, name="fake-llm", timeout=10, on_loop=make_condition):
        fake.url, fake.loop = f"http://127.0.0.1:{port}/v1", loop
        yield fake
