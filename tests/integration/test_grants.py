"""A keyed server on loopback: grants open sessions without the key; ops endpoints keep quiet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from streamer.config import Settings
from streamer.headless.client import Client
from streamer.server.grants import Grants
from tests.integration.conftest import LiveServer, live_server

KEY = "test-server-key-0123456789"
METRICS_TOKEN = "scrape-me-please"
TEMPLATE = "astronaut"


@dataclass
class Keyed:
    live: LiveServer

    @property
    def url(self) -> str:
        return self.live.url

    async def request(self, method: str, path: str, bearer: str | None = None, **kw) -> tuple[int, dict, dict]:
        headers = dict(kw.pop("headers", {}))
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.url + path, headers=headers, **kw) as r,
        ):
            body = await r.json(content_type=None) if r.content_type == "application/json" else {}
            return r.status, body, dict(r.headers)

    async def grant(self, **body) -> str:
        status, reply, _ = await self.request("POST", "/api/grants", KEY, json={"templates": [TEMPLATE], **body})
        assert status == 201 and reply["expires"] > time.time()
        return reply["grant"]


@pytest.fixture(scope="module")
def keyed(cache_dir: Path) -> Iterator[Keyed]:
    settings = Settings(
        cache_dir=cache_dir,
        key=KEY,
        metrics_token=METRICS_TOKEN,
        max_sessions=6,
        max_sessions_per_client=2,
        trusted_proxies=("127.0.0.1",),
        cors_origins=("https://player.example",),
    )
    with live_server(settings) as live:
        yield Keyed(live)


async def test_a_grant_opens_one_session_and_the_key_never_leaves_the_backend(keyed):
    grant = await keyed.grant(ttl_s=30)
    client = Client(keyed.url, key=grant)
    try:
        await client.connect(TEMPLATE)
        await client.wait_frames(5)
        state = await client.call("GET", f"/api/sessions/{client.session_id}")
        assert state["session_id"] == client.session_id  # the session's own token controls it
        again = Client(keyed.url, key=grant)
        with pytest.raises(RuntimeError, match="401"):
            await again.connect(TEMPLATE)
        await again.close()
    finally:
        await client.close()


async def test_missing_tampered_expired_and_wrong_template_grants_get_401(keyed):
    offer = {"template": TEMPLATE, "sdp": "v=0\r\n", "type": "offer"}
    status, body, _ = await keyed.request("POST", "/api/sessions", json=offer)
    assert status == 401 and "grant" in body["error"]
    status, body, _ = await keyed.request("POST", "/api/grants", json={"templates": [TEMPLATE]})
    assert status == 401 and "key" in body["error"]
    status, body, _ = await keyed.request("POST", "/api/grants", "not-the-key", json={"templates": [TEMPLATE]})
    assert status == 401
    grant = await keyed.grant()
    tampered = grant[:-3] + ("AAA" if not grant.endswith("AAA") else "BBB")
    status, body, _ = await keyed.request("POST", "/api/sessions", tampered, json=offer)
    assert status == 401 and "not valid" in body["error"]
    expired, _ = Grants(KEY, clock=lambda: time.time() - 600).mint((TEMPLATE,), 60)
    status, body, _ = await keyed.request("POST", "/api/sessions", expired, json=offer)
    assert status == 401 and "expired" in body["error"]
    status, body, _ = await keyed.request("POST", "/api/sessions", grant, json={**offer, "template": "nope"})
    assert status == 401 and "not for template" in body["error"]
    status, body, _ = await keyed.request("POST", "/api/grants", KEY, json={"templates": ["nope"]})
    assert status == 404
    status, body, _ = await keyed.request("POST", "/api/grants", KEY, json={"templates": [TEMPLATE], "ttl_s": 7200})
    assert status == 400 and "ttl_s" in body["error"]


async def test_whep_takes_the_grant_and_the_same_bearer_deletes_the_resource(keyed):
    client = Client(keyed.url)  # only for its offer: WHEP players post SDP, not JSON
    client.pc.addTransceiver("video", direction="recvonly")
    await client.pc.setLocalDescription(await client.pc.createOffer())
    grant = await keyed.grant()
    sdp = client.pc.localDescription.sdp
    try:
        status, _, headers = await keyed.request(
            "POST", f"/whep/{TEMPLATE}", grant, data=sdp, headers={"Content-Type": "application/sdp"}
        )
        assert status == 201
        resource = headers["Location"]
        status, body, _ = await keyed.request(
            "PATCH", resource, grant, data="a=candidate:1", headers={"Content-Type": "application/trickle-ice-sdpfrag"}
        )
        assert status == 405 and "trickle" in body["error"]
        status, _, _ = await keyed.request("DELETE", resource, "someone-else")
        assert status == 401
        status, _, _ = await keyed.request("DELETE", resource, grant)
        assert status == 200
    finally:
        await client.pc.close()


async def test_cors_preflight_allows_patch_for_a_whep_player(keyed):
    status, _, headers = await keyed.request(
        "OPTIONS",
        f"/whep/{TEMPLATE}",
        headers={"Origin": "https://player.example", "Access-Control-Request-Method": "PATCH"},
    )
    assert status == 204 and "PATCH" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Origin"] == "https://player.example"


async def test_ops_endpoints_say_little_without_the_key(keyed):
    grant = await keyed.grant()
    client = Client(keyed.url, key=grant)
    try:
        await client.connect(TEMPLATE)
        await client.wait_frames(3)
        status, public, _ = await keyed.request("GET", "/api/stats")
        assert status == 200 and public["sessions"]["open"] >= 1 and "list" not in public["sessions"]
        assert client.session_id not in str(public) and "startup" not in public
        status, full, _ = await keyed.request("GET", "/api/stats", KEY)
        assert client.session_id in {s["session_id"] for s in full["sessions"]["list"]}
        status, _, _ = await keyed.request("GET", "/metrics")
        assert status == 401
        for token in (KEY, METRICS_TOKEN):
            async with (
                aiohttp.ClientSession() as http,
                http.get(keyed.url + "/metrics", headers={"Authorization": f"Bearer {token}"}) as r,
            ):
                assert r.status == 200 and "streamer_worker_alive" in await r.text()
        status, ready, _ = await keyed.request("GET", "/readyz")
        assert status == 200 and set(ready) == {"ready", "phase", "at_capacity"} and ready["phase"] == "ready"
    finally:
        await client.close()


async def test_forwarded_headers_count_only_from_a_trusted_proxy(keyed):
    # The proxy (loopback, trusted) says the page was https://avatar.example: its own origin.
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "avatar.example", "X-Forwarded-For": "203.0.113.9"}
    status, _, headers = await keyed.request(
        "GET", "/api/templates", headers={"Origin": "https://avatar.example", **forwarded}
    )
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://avatar.example"
    status, body, _ = await keyed.request("GET", "/api/templates", headers={"Origin": "https://avatar.example"})
    assert status == 403 and "not allowed" in body["error"]


async def test_json_bodies_and_sdp_offers_are_capped(keyed):
    grant = await keyed.grant()
    huge = {"template": TEMPLATE, "sdp": "v=0\r\n" + "a=x\r\n" * 20000, "type": "offer"}
    status, body, _ = await keyed.request("POST", "/api/sessions", grant, json=huge)
    assert status == 413 and "bytes" in body["error"]
    status, body, _ = await keyed.request(
        "POST", "/api/grants", KEY, data=b"[" * 60000, headers={"Content-Type": "application/json"}
    )
    assert status == 400 and "JSON" in body["error"]


async def test_the_server_key_still_opens_sessions(keyed):
    client = Client(keyed.url, key=KEY)
    try:
        await client.connect(TEMPLATE)
        await asyncio.wait_for(client.wait_frames(3), 30)
    finally:
        await client.close()


async def test_a_grants_max_session_s_closes_the_session_with_a_reason(keyed):
    grant = await keyed.grant(max_session_s=2)
    client = Client(keyed.url, key=grant)
    try:
        await client.connect(TEMPLATE)
        closing = await client.wait_event("closing", timeout=20)
        assert closing["reason"] == "limit"
    finally:
        await client.close()


async def _offer() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def test_sessions_per_client_count_the_address_the_trusted_proxy_forwards(keyed):
    pcs, opened = [], []
    try:
        for client, expect in (("203.0.113.7", 201), ("203.0.113.7", 201), ("203.0.113.7", 429), ("198.51.100.2", 201)):
            pc, sdp = await _offer()
            pcs.append(pc)
            status, body, _ = await keyed.request(
                "POST",
                "/api/sessions",
                KEY,
                json={"template": TEMPLATE, "sdp": sdp, "type": "offer"},
                headers={"X-Forwarded-For": client},
            )
            assert status == expect, body
            if status == 201:
                opened.append(body["session_id"])
            else:
                assert "203.0.113.7 holds its limit of 2" in body["error"]
    finally:
        for session_id in opened:
            await keyed.request("DELETE", f"/api/sessions/{session_id}", KEY)
        for pc in pcs:
            await pc.close()
