"""Attack: one session's uploads try to break every other session's (the review's repro: 12
crafted 8-channel uploads from one session while another uploads 12 normal clips). Every
normal clip is 202 and heard; a session whose uploads keep crashing decoders is refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bench import audio_layouts
from streamer.config import Settings
from streamer.headless.client import Client
from streamer.server.decoding import Decoders
from streamer.server.keys import AUDIO_DECODERS
from streamer.server.limits import CRASHES_ALLOWED
from tests.contract.openapi import CONTRACT
from tests.decoder_faults import CRASH, decode_or_crash
from tests.support import servers as testing

TEMPLATE = "astronaut"
CLIPS = 12


def _clip() -> bytes:
    return audio_layouts.encoded("wav", "pcm_s16le", 16000, "mono", seconds=0.3) or b""


def _crafted() -> list[tuple[bytes, str]]:
    flac = audio_layouts.encoded("flac", "flac", 16000, "7.1")
    assert flac is not None
    return [(audio_layouts.unnamed_wav(8, seconds=0.025), "audio/wav"), (flac, "audio/flac")] * (CLIPS // 2)


async def _upload(url: str, client: Client, data: bytes, content_type: str) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {client.token}", "Content-Type": content_type}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/api/sessions/{client.session_id}/speak", data=data, headers=headers) as r,
    ):
        return r.status, await r.json()


async def _victim_speaks(url: str, victim: Client) -> list[str]:
    """12 normal clips, one after another: each must be 202; returns the utterance ids."""
    ids = []
    for _ in range(CLIPS):
        status, body = await _upload(url, victim, _clip(), "audio/wav")
        assert status == 202, body
        ids.append(body["utterance_id"])
    return ids


async def _attack(url: str, attacker: Client, uploads: list[tuple[bytes, str]]) -> list[tuple[int, dict]]:
    return await asyncio.gather(*(_upload(url, attacker, data, ctype) for data, ctype in uploads))


async def _both(url: str, uploads: list[tuple[bytes, str]]) -> list[tuple[int, dict]]:
    victim, attacker = Client(url), Client(url)
    try:
        await victim.connect(TEMPLATE)
        await attacker.connect(TEMPLATE)
        ids, answers = await asyncio.gather(_victim_speaks(url, victim), _attack(url, attacker, uploads))
        for utterance_id in ids:  # and heard: each one played to its end
            ended = await victim.wait_event("speaking_ended", utterance_id, timeout=60)
            assert ended["utterance_id"] == utterance_id
        return answers
    finally:
        await victim.close()
        await attacker.close()


async def test_crafted_eight_channel_uploads_do_not_touch_another_sessions_speech(server):
    answers = await _both(server.url, _crafted())
    assert all(status in (202, 429) for status, _ in answers), answers  # decoded (or over the upload limit)
    assert any(status == 202 for status, _ in answers)
    assert server.app[AUDIO_DECODERS].crashes == 0


@contextlib.contextmanager
def _crashable(cache_dir: Path) -> Iterator[testing.LiveServer]:
    """A server whose decoders abort on a body starting CRASH (as a segfaulting FFmpeg would)."""

    def on_app(app) -> None:
        CONTRACT.attach(app)
        app[AUDIO_DECODERS] = Decoders(speech_fn=decode_or_crash)

    with testing.live_server(Settings(cache_dir=cache_dir, max_sessions=4), on_app=on_app) as live:
        yield live


@pytest.fixture(scope="module")
def crashable(cache_dir: Path) -> Iterator[testing.LiveServer]:
    with _crashable(cache_dir) as live:
        yield live


async def test_uploads_that_crash_decoders_fail_alone_and_then_are_refused(crashable):
    uploads = [(CRASH + bytes(64), "audio/wav")] * CLIPS
    answers = await _both(crashable.url, uploads)
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {400, 403, 429}, answers
    crashed = [body for status, body in answers if status == 400]
    assert crashed and all("crashed" in body["error"] for body in crashed)
    assert len(crashed) <= CRASHES_ALLOWED + 1  # one may have been in flight when the third landed
    decoders = crashable.app[AUDIO_DECODERS]
    assert decoders.crashes == len(crashed)


async def test_once_refused_a_session_stays_refused_even_with_good_audio(crashable):
    attacker = Client(crashable.url)
    try:
        await attacker.connect(TEMPLATE)
        for _ in range(CRASHES_ALLOWED):
            status, body = await _upload(crashable.url, attacker, CRASH, "audio/wav")
            assert status == 400 and "crashed" in body["error"]
        status, body = await _upload(crashable.url, attacker, _clip(), "audio/wav")
        assert status == 403 and "crashed the audio decoder" in body["error"]
    finally:
        await attacker.close()
