"""The session limits as a live server applies them: the idle close, the close of a session whose
viewer never connects, and the per-session upload limit (the rules alone: tests/unit/test_limit_rules.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection

from streamer.config import Settings
from streamer.headless.client import Client
from streamer.server import sessions as registry
from streamer.server.keys import SESSIONS
from tests.integration.conftest import LiveServer, live_server

TEMPLATE = "astronaut"


async def _closed(server: LiveServer, session_id: str, timeout: float) -> None:
    """Wait, on the server's own loop, until the session has closed (or returns: it is gone)."""
    session = server.app[SESSIONS].sessions.get(session_id)
    if session is None:
        return
    done = asyncio.run_coroutine_threadsafe(asyncio.wait_for(session.closed.wait(), timeout), server.loop)
    await asyncio.wrap_future(done)


async def _status(server: LiveServer, session_id: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/api/sessions/{session_id}", headers=headers) as r,
    ):
        return r.status


async def test_a_session_without_speech_closes_with_reason_idle(cache_dir: Path):
    with live_server(Settings(cache_dir=cache_dir, idle_timeout_s=1.0)) as server:
        client = Client(server.url)
        try:
            await client.connect(TEMPLATE)
            await client.wait_frames(5)
            closing = await client.wait_event("closing", timeout=60)
            assert closing["reason"] == "idle"
            await _closed(server, client.session_id, 15)
            assert await _status(server, client.session_id, client.token) == 404
        finally:
            await client.close()


async def test_a_viewer_that_never_connects_loses_its_session(cache_dir: Path, monkeypatch):
    monkeypatch.setattr(registry, "CONNECT_TIMEOUT_S", 1.0)
    with live_server(Settings(cache_dir=cache_dir)) as server:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        try:
            await pc.setLocalDescription(await pc.createOffer())
            body = {"template": TEMPLATE, "sdp": pc.localDescription.sdp, "type": "offer"}
            async with aiohttp.ClientSession() as http, http.post(f"{server.url}/api/sessions", json=body) as r:
                assert r.status == 201
                opened = await r.json()
            # The answer is never applied: no ICE, no DTLS, the viewer never connects.
            await _closed(server, opened["session_id"], 30)
            assert await _status(server, opened["session_id"], opened["token"]) == 404
        finally:
            await pc.close()


async def _held_upload(server: LiveServer, session_id: str, token: str, length: int):
    """An upload whose body has not arrived: its handler is counted while it reads."""
    reader, writer = await asyncio.open_connection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    head = (
        f"POST /api/sessions/{session_id}/speak HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: audio/wav\r\nContent-Length: {length}\r\n"
        "Expect: 100-continue\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 100")  # the handler is about to read the body
    await reader.readline()
    return reader, writer


async def test_uploads_past_the_per_session_limit_get_429_and_the_held_one_completes(cache_dir: Path, speech_wav):
    wav = speech_wav.read_bytes()
    with live_server(Settings(cache_dir=cache_dir, max_uploads_per_session=1)) as server:
        client = Client(server.url)
        try:
            await client.connect(TEMPLATE)
            reader, writer = await _held_upload(server, client.session_id, client.token, len(wav))
            await client.state()  # one more round trip: the held handler has entered its upload
            path = f"/api/sessions/{client.session_id}/speak"
            refused = await client.call("POST", path, expect=429, data=wav, headers=client_headers(client))
            assert "upload" in refused["error"]
            writer.write(wav)
            await writer.drain()
            status = await reader.readline()
            writer.close()
            assert status.startswith(b"HTTP/1.1 202"), status
            accepted = await client.call("POST", path, expect=202, data=wav, headers=client_headers(client))
            assert accepted["utterance_id"]
        finally:
            await client.close()


def client_headers(client: Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.token}", "Content-Type": "audio/wav"}
