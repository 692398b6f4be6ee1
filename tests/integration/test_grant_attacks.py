"""Attacks with one valid grant, on servers that share a Redis grant store: opening a session
on each server (or again after a restart), forging client addresses past the per-client limit,
burning a grant with a bad offer or a 429. And the store itself: SET NX with the grant's expiry."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from bench.common import viewer_offer
from streamer.config import Settings
from streamer.server.grant_store import KEY_PREFIX, RedisStore
from tests.integration.conftest import LiveServer, live_server
from tests.redis_server import redis_server

KEY = "grant-attacks-key-0123456789"
TEMPLATE = "astronaut"
PROXY_CHAIN = ("127.0.0.1", "10.0.0.0/8")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def settings(cache_dir: Path, redis_url: str) -> Settings:
    return Settings(
        cache_dir=cache_dir,
        key=KEY,
        grant_store=redis_url,
        max_sessions=3,
        max_sessions_per_client=2,
        trusted_proxies=PROXY_CHAIN,
    )


@pytest.fixture(scope="module")
def pair(settings: Settings) -> Iterator[tuple[LiveServer, LiveServer]]:
    with live_server(settings) as first, live_server(settings) as second:
        yield first, second


@pytest.fixture(scope="module")
def offer() -> str:
    return asyncio.run(viewer_offer())


async def _call(url: str, method: str, path: str, bearer: str, headers: list[tuple[str, str]] = (), **kw):
    all_headers = [("Authorization", f"Bearer {bearer}"), *headers]
    async with aiohttp.ClientSession() as http, http.request(method, url + path, headers=all_headers, **kw) as r:
        body = await r.json(content_type=None) if r.content_type == "application/json" else await r.text()
        return r.status, body


async def _grant(url: str) -> str:
    status, body = await _call(url, "POST", "/api/grants", KEY, json={"templates": [TEMPLATE], "ttl_s": 600})
    assert status == 201
    return body["grant"]


async def _open(url: str, bearer: str, offer: str, headers=(), template: str = TEMPLATE) -> tuple[int, dict]:
    body = {"template": template, "sdp": offer, "type": "offer"}
    return await _call(url, "POST", "/api/sessions", bearer, headers, json=body)


@contextlib.asynccontextmanager
async def _sessions(url: str):
    opened: list[str] = []
    try:
        yield opened
    finally:
        for session_id in opened:
            await _call(url, "DELETE", f"/api/sessions/{session_id}", KEY)


async def test_one_grant_opens_one_session_across_servers_and_restarts(pair, settings, offer):
    first, second = pair
    grant = await _grant(first.url)
    async with _sessions(first.url) as opened:
        status, body = await _open(first.url, grant, offer)
        assert status == 201
        opened.append(body["session_id"])
        status, body = await _open(second.url, grant, offer)
        assert status == 401 and "used already" in body["error"]
        with live_server(replace(settings)) as restarted:  # a server started after: same store
            status, body = await _open(restarted.url, grant, offer)
            assert status == 401 and "used already" in body["error"]


async def test_refusals_leave_the_grant_usable(pair, offer):
    first, _ = pair
    grant = await _grant(first.url)
    bad_offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 x\r\n"
    status, body = await _open(first.url, grant, bad_offer)
    assert status == 400 and "could not be parsed" in body["error"] and "unpack" not in body["error"]
    status, body = await _call(
        first.url, "POST", f"/whep/{TEMPLATE}", grant, data="v=0\r\n", headers=[("Content-Type", "application/sdp")]
    )
    assert status == 400
    status, _ = await _open(first.url, grant, offer, template="dog")
    assert status in (401, 404)
    async with _sessions(first.url) as opened:
        for _ in range(3):  # the server's limit of 3 sessions, opened with the key
            status, body = await _open(first.url, KEY, offer)
            assert status == 201
            opened.append(body["session_id"])
        status, body = await _open(first.url, grant, offer)
        assert status == 429
        await _call(first.url, "DELETE", f"/api/sessions/{opened.pop()}", KEY)
        status, body = await _open(first.url, grant, offer)  # the 429 did not use it up
        assert status == 201
        opened.append(body["session_id"])


@pytest.mark.parametrize(
    "lines",
    [
        [("X-Forwarded-For", "127.0.0.1")],  # the proxy names a loopback client: no exemption
        [("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-For", "203.0.113.50")],  # client's line, proxy's line
        [("X-Forwarded-For", "127.0.0.1, 203.0.113.50, 10.0.0.2")],  # a chain through a trusted 10.x proxy
    ],
)
async def test_forged_forwarded_lines_cannot_lift_the_per_client_limit(pair, offer, lines):
    first, _ = pair
    async with _sessions(first.url) as opened:
        for _ in range(2):
            status, body = await _open(first.url, KEY, offer, headers=lines)
            assert status == 201
            opened.append(body["session_id"])
        status, body = await _open(first.url, KEY, offer, headers=lines)
        assert status == 429 and "holds its limit of 2" in body["error"]


async def test_the_store_claims_once_with_the_grants_expiry(redis_url):
    store = RedisStore(redis_url)
    try:
        expires = int(time.time()) + 120
        assert await store.claim("jti-1", expires) and not await store.claim("jti-1", expires)
        assert await store.used("jti-1") and not await store.used("jti-2")
        ttl = await store._redis().ttl(KEY_PREFIX + "jti-1")
        assert 100 < ttl <= 121
    finally:
        await store.close()


async def test_an_unreachable_store_is_a_503_not_a_session(cache_dir):
    from streamer.errors import NotReady
    from tests.support.servers import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(NotReady, match="unreachable"):
        await store.claim("jti", int(time.time()) + 60)
    await store.close()


async def test_one_grant_raced_on_two_servers_at_once_opens_one_session(pair, offer):
    first, second = pair
    grant = await _grant(first.url)
    answers = await asyncio.gather(_open(first.url, grant, offer), _open(second.url, grant, offer))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201, 401], answers
    for (status, body), live in zip(answers, (first, second), strict=True):
        if status == 201:
            await _call(live.url, "DELETE", f"/api/sessions/{body['session_id']}", KEY)
