"""`GET /api/ice-servers` and the WHEP `Link` headers on a keyed server with STUN and TURN
configured: TURN credentials only to the key (or a grant); every answer held to the contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from streamer.config import Settings
from tests.integration.conftest import LiveServer, live_server

KEY = "ice-server-key-0123456789"
STUN = "stun:127.0.0.1:3478"
TURN = "turn:viewer:secret@127.0.0.1:3478?transport=udp"


@pytest.fixture(scope="module")
def keyed(cache_dir: Path) -> Iterator[LiveServer]:
    with live_server(Settings(cache_dir=cache_dir, key=KEY, ice_servers=(STUN, TURN))) as live:
        yield live


async def _get(url: str, path: str, bearer: str | None = None, method: str = "GET") -> tuple[int, object, list[str]]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with aiohttp.ClientSession() as http, http.request(method, url + path, headers=headers) as r:
        body = await r.json() if r.content_type == "application/json" else None
        return r.status, body, r.headers.getall("Link", [])


async def test_turn_credentials_go_to_the_key_holder_and_a_grant_only(keyed):
    status, public, _ = await _get(keyed.url, "/api/ice-servers")
    assert status == 200 and public == {"ice_servers": [{"urls": "stun:127.0.0.1:3478"}]}

    status, full, _ = await _get(keyed.url, "/api/ice-servers", KEY)
    assert status == 200
    assert full["ice_servers"][1] == {
        "urls": "turn:127.0.0.1:3478?transport=udp",
        "username": "viewer",
        "credential": "secret",
    }

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            keyed.url + "/api/grants", json={"templates": ["astronaut"]}, headers={"Authorization": f"Bearer {KEY}"}
        ) as r,
    ):
        assert r.status == 201
        grant = (await r.json())["grant"]
    status, granted, _ = await _get(keyed.url, "/api/ice-servers", grant)
    assert status == 200 and granted == full
    status, forged, _ = await _get(keyed.url, "/api/ice-servers", grant[:-4] + "AAAA")
    assert status == 200 and forged == public


async def test_whep_options_links_the_stun_server_and_turn_with_the_key(keyed):
    status, _, links = await _get(keyed.url, "/whep/astronaut", method="OPTIONS")
    assert status == 204 and links == ['<stun:127.0.0.1:3478>; rel="ice-server"']
    status, _, links = await _get(keyed.url, "/whep/astronaut", KEY, method="OPTIONS")
    assert status == 204 and len(links) == 2
    assert 'username="viewer"; credential="secret"' in links[1]
