"""A session's state lives in one record the registry owns (server/sessions.py `OpenSession`):
its client address, the grant that opened it, its sockets. Closing the session drops all of it,
and the limits that count these (per client, per session) still hold while it is open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from streamer.config import Settings
from streamer.server.keys import SESSIONS
from streamer.server.sessions import OpenSession
from tests.integration.conftest import LiveServer, live_server

KEY = "state-test-key-0123456789"
TEMPLATE = "astronaut"
VIEWER = "203.0.113.21"
"""The address the trusted proxy (loopback) names: loopback itself is never limited per client."""


@pytest.fixture(scope="module")
def keyed(cache_dir: Path) -> Iterator[LiveServer]:
    settings = Settings(
        cache_dir=cache_dir,
        key=KEY,
        max_sessions_per_client=1,
        max_sockets_per_session=1,
        trusted_proxies=("127.0.0.1",),
    )
    with live_server(settings) as live:
        yield live


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _grant(server: LiveServer, http: aiohttp.ClientSession) -> str:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with http.post(f"{server.url}/api/grants", json={"templates": [TEMPLATE]}, headers=headers) as r:
        assert r.status == 201
        return str((await r.json())["grant"])


async def _open(server: LiveServer, http: aiohttp.ClientSession, grant: str) -> tuple[int, dict]:
    """Open a session from VIEWER with `grant` (its viewer never connects: that is not needed)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        body = {"template": TEMPLATE, "sdp": pc.localDescription.sdp, "type": "offer"}
        headers = {"Authorization": f"Bearer {grant}", "X-Forwarded-For": VIEWER}
        async with http.post(f"{server.url}/api/sessions", json=body, headers=headers) as r:
            return r.status, await r.json()
    finally:
        await pc.close()


async def _status(server: LiveServer, http: aiohttp.ClientSession, method: str, session_id: str, bearer: str) -> int:
    headers = {"Authorization": f"Bearer {bearer}"}
    async with http.request(method, f"{server.url}/api/sessions/{session_id}", headers=headers) as r:
        return r.status


def _record(server: LiveServer, session_id: str) -> OpenSession | None:
    """The registry's record, read on the server's own loop."""

    async def read() -> OpenSession | None:
        return server.app[SESSIONS].open_sessions.get(session_id)

    return asyncio.run_coroutine_threadsafe(read(), server.loop).result(timeout=10)


async def test_closing_a_session_drops_its_client_grant_and_sockets_and_the_limits_hold(keyed, http):
    grant = await _grant(keyed, http)
    status, opened = await _open(keyed, http, grant)
    assert status == 201, opened
    sid, token = opened["session_id"], opened["token"]
    url = keyed.url.replace("http", "ws") + f"/api/sessions/{sid}/audio"
    protocols = ("streamer-audio", f"token.{token}")
    async with http.ws_connect(url, protocols=protocols):
        record = _record(keyed, sid)
        assert record is not None
        assert (record.client, record.grant_token, record.sockets) == (VIEWER, grant, 1)
        # What the record holds is what the limits read: one socket and one session per client.
        with pytest.raises(aiohttp.WSServerHandshakeError) as second:
            await http.ws_connect(url, protocols=protocols)
        assert second.value.status == 429
        refused, body = await _open(keyed, http, await _grant(keyed, http))
        assert refused == 429 and f"{VIEWER} holds its limit of 1" in body["error"]
        assert await _status(keyed, http, "GET", sid, grant) == 200  # the grant's bearer controls it

        assert await _status(keyed, http, "DELETE", sid, token) == 200
    assert _record(keyed, sid) is None
    assert await _status(keyed, http, "GET", sid, grant) == 404
    # Nothing of it is left to count: the same viewer opens a new session at once.
    again, reopened = await _open(keyed, http, await _grant(keyed, http))
    assert again == 201, reopened
    assert await _status(keyed, http, "DELETE", reopened["session_id"], KEY) == 200
    assert not keyed.app[SESSIONS].open_sessions
