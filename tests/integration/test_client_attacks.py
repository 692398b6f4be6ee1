"""Attacks by a client holding one grant or one session: slow and bloated requests, TURN
credentials past the grant, many sockets, tokens in URLs, speech while draining, a stream that
outruns its cap, engine text in error bodies. All on one keyed server over loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from streamer.config import Settings
from streamer.headless.client import Client
from streamer.server.keys import STARTUP
from tests.integration.conftest import LiveServer, live_server

KEY = "client-attacks-key-0123456789"
TEMPLATE = "astronaut"
TURN = "turn:127.0.0.1:3478?transport=udp"
SOCKET_WAIT_S = 60.0
"""How long a test waits for the server to answer or close (the deadline itself is 2 s)."""


@pytest.fixture(scope="module")
def keyed(cache_dir: Path) -> Iterator[LiveServer]:
    settings = Settings(
        cache_dir=cache_dir,
        key=KEY,
        read_timeout_s=2.0,
        ice_servers=(TURN,),
        turn_secret="coturn-shared-secret",
        max_audio_seconds=1.0,
        tts="espeak",
        tts_voice="zzqq",  # espeak-ng fails on it, and says so on stderr
    )
    with live_server(settings) as live:
        yield live


def _raw(url: str, data: bytes) -> bytes:
    """Send `data` on a fresh connection, then read until the server closes it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=SOCKET_WAIT_S) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received


async def _request(url: str, method: str, path: str, bearer: str | None = None, **kw):
    headers = dict(kw.pop("headers", {}))
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    async with aiohttp.ClientSession() as http, http.request(method, url + path, headers=headers, **kw) as r:
        return r.status, await r.json(content_type=None)


async def test_a_connection_that_drips_its_headers_is_closed(keyed):
    loop = asyncio.get_running_loop()
    partial = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: "  # and never the rest
    received = await loop.run_in_executor(None, _raw, keyed.url, partial)
    assert b"200 OK" not in received  # closed without an answer: the headers never came


async def test_a_body_that_never_arrives_gets_408(keyed):
    head = (
        "POST /api/grants HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: 1000\r\n\r\n"
    )
    received = await asyncio.get_running_loop().run_in_executor(None, _raw, keyed.url, head.encode() + b'{"te')
    assert received.startswith(b"HTTP/1.1 408") and b"did not arrive within 2 s" in received


async def test_a_hundred_headers_of_8_kib_are_refused(keyed):
    filler = "".join(f"X-Filler-{i}: {'a' * 8000}\r\n" for i in range(100))
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{filler}\r\n".encode()
    received = await asyncio.get_running_loop().run_in_executor(None, _raw, keyed.url, request)
    assert received.split(b" ", 2)[1] in (b"400", b"431")


async def test_the_bearer_is_checked_before_a_session_body_is_read(keyed):
    head = (
        "POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 50000\r\nConnection: close\r\n\r\n"
    )  # no Authorization, and a body that never comes: answered at once, not after the body
    received = await asyncio.get_running_loop().run_in_executor(None, _raw, keyed.url, head.encode())
    assert received.startswith(b"HTTP/1.1 401")


def _turn(body: dict) -> list[dict]:
    return [s for s in body["ice_servers"] if s["urls"].startswith("turn")]


async def test_a_used_grant_gets_no_turn_credentials_and_a_session_gets_them_for_its_life(keyed):
    status, minted = await _request(
        keyed.url, "POST", "/api/grants", KEY, json={"templates": [TEMPLATE], "max_session_s": 60}
    )
    grant = minted["grant"]
    status, body = await _request(keyed.url, "GET", "/api/ice-servers", grant)
    [before] = _turn(body)  # a page asks before its offer: valid no longer than its session could last
    assert int(before["username"].split(":")[0]) <= minted["expires"] + 60 + 1
    client = Client(keyed.url, key=grant)
    try:
        await client.connect(TEMPLATE)
        status, body = await _request(keyed.url, "GET", "/api/ice-servers", grant)
        assert status == 200 and _turn(body) == []  # used up: no more relaying on it
        path = f"/api/ice-servers?session={client.session_id}"
        status, body = await _request(keyed.url, "GET", path, client.token)
        [relay] = _turn(body)
        assert int(relay["username"].split(":")[0]) <= time.time() + 60 + 1  # the grant's 60 s session
    finally:
        await client.close()
    status, body = await _request(keyed.url, "GET", path, client.token)
    assert _turn(body) == []  # the session is over


async def test_the_third_socket_on_a_session_gets_429_and_the_key_never_rides_in_a_url(keyed):
    client = Client(keyed.url, key=KEY)
    try:
        await client.connect(TEMPLATE)
        url = keyed.url.replace("http", "ws") + f"/api/sessions/{client.session_id}/audio"
        protocols = ("streamer-audio", f"token.{client.token}")
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"{url}?token={KEY}")
            assert refused.value.status == 401
            async with http.ws_connect(url, protocols=protocols) as first, http.ws_connect(url, protocols=protocols):
                assert first.protocol == "streamer-audio"
                with pytest.raises(aiohttp.WSServerHandshakeError) as third:
                    await http.ws_connect(url, protocols=protocols)
                assert third.value.status == 429
            async with http.ws_connect(f"{url}?token={client.token}") as again:  # closed ones are counted out
                await again.send_json({"type": "interrupt"})
    finally:
        await client.close()


async def test_a_stream_past_its_cap_is_ended_there_and_said_so_never_holed(keyed):
    client = Client(keyed.url, key=KEY)
    try:
        await client.connect(TEMPLATE)
        url = keyed.url.replace("http", "ws") + f"/api/sessions/{client.session_id}/audio"
        protocols = ("streamer-audio", f"token.{client.token}")
        async with aiohttp.ClientSession() as http, http.ws_connect(url, protocols=protocols) as ws:
            await ws.send_json({"type": "start", "sample_rate": 16000})
            started = await ws.receive_json()
            await ws.send_bytes(bytes(2 * 12800))  # 0.8 s
            await ws.send_bytes(bytes(2 * 6400))  # 0.4 s more: past max_audio_seconds (1 s)
            error, ended = await ws.receive_json(), await ws.receive_json()
            assert error["type"] == "error" and error["status"] == 413 and "ended at 0.80 s" in error["error"]
            assert ended == {"type": "ended", "utterance_id": started["utterance_id"], "duration_s": 0.8}
            await ws.send_bytes(bytes(3200))  # nothing more is taken into it
            assert "send start" in (await ws.receive_json())["error"]
    finally:
        await client.close()


async def test_speech_is_refused_with_503_while_draining(keyed):
    client = Client(keyed.url, key=KEY)
    startup = keyed.app[STARTUP]

    async def draining(value: bool) -> None:
        startup.draining = value

    try:
        await client.connect(TEMPLATE)
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(draining(True), keyed.loop))
        status, body = await _request(
            keyed.url,
            "POST",
            f"/api/sessions/{client.session_id}/speak",
            client.token,
            data=bytes(3200),
            headers={"Content-Type": "audio/pcm;rate=16000"},
        )
        assert status == 503 and "shutting down" in body["error"]
    finally:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(draining(False), keyed.loop))
        await client.close()


async def test_a_failing_tts_engine_does_not_speak_through_the_error_body(keyed):
    client = Client(keyed.url, key=KEY)
    try:
        await client.connect(TEMPLATE)
        status, body = await _request(
            keyed.url, "POST", f"/api/sessions/{client.session_id}/say", client.token, json={"text": "hello"}
        )
        assert status >= 500 and body["error"] == "speech synthesis failed (the server log says why)"
    finally:
        await client.close()
