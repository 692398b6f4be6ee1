"""Sessions over real aiortc peer connections on loopback, watched by the headless client."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from streamer.audio import decode_file
from streamer.headless.client import Client
from streamer.headless.measure import audio_envelope, av_offset_ms, mouth_motion

TEMPLATE = "astronaut"
SPEECH_RMS = 300.0
"""int16 RMS above which a 20 ms audio frame holds speech (silence decodes to ~0)."""
MOVING = 20.0
"""Mouth motion (client.mouth_motion) of an open mouth; a still face stays under ~10."""


async def connected(server, template: str = TEMPLATE) -> Client:
    client = Client(server.url)
    await client.connect(template)
    await client.wait_frames(5)
    return client


async def speak_and_wait(client: Client, wav: Path) -> tuple[dict, float, float, float]:
    """Speak `wav` once the welcome clip is over; returns the reply, sent, started, ended times."""
    await client.wait_event("welcome_ended", timeout=30)
    reply, sent = await client.speak(wav.read_bytes(), "audio/wav")
    await client.wait_event("speaking_started", reply["utterance_id"], timeout=10)
    started = time.monotonic()
    await client.wait_event("speaking_ended", reply["utterance_id"], timeout=30)
    ended = time.monotonic()
    await client.wait_frames(10)  # idle after speech
    return reply, sent, started, ended


def normalised_xcorr_peak(received: np.ndarray, sent: np.ndarray) -> float:
    """Peak of the normalised cross-correlation of two signals (1.0: identical up to a shift)."""
    received = received.astype(np.float64) - received.mean()
    sent = sent.astype(np.float64) - sent.mean()
    n = len(received) + len(sent)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(received, size) * np.conj(np.fft.rfft(sent, size)), size)
    return float(np.abs(corr).max() / (np.linalg.norm(received) * np.linalg.norm(sent)))


async def test_welcome_audio_arrives_first_then_idle(server):
    client = await connected(server)
    try:
        welcome = await client.wait_event("welcome_ended", timeout=30)
        r = client.received
        t_end = next(t for t, e in r.events if e is welcome)
        _, rms = audio_envelope(r, client.opened_at, t_end)
        assert (rms > SPEECH_RMS).mean() > 0.3  # the welcome line was heard
        await client.wait_frames(25)
        _, after = audio_envelope(r, t_end + 0.3, time.monotonic())
        assert len(after) > 20 and after.max() < SPEECH_RMS  # then silence
        templates = await client.call("GET", "/api/templates")
        seconds = next(t["welcome_seconds"] for t in templates["templates"] if t["id"] == TEMPLATE)
        assert abs((t_end - r.video_times[0]) - seconds) < 1.0
    finally:
        await client.close()


async def test_speech_is_heard_lip_synced_and_the_face_rests_in_silence(server, speech_wav):
    client = await connected(server)
    try:
        reply, sent, started, ended = await speak_and_wait(client, speech_wav)
        r = client.received
        assert reply["duration_s"] == pytest.approx(len(decode_file(speech_wav, 16000)) / 16000, abs=0.05)

        # The audio that arrived is the speech that was sent.
        heard = r.audio_between(sent, ended + 0.3)
        assert normalised_xcorr_peak(heard, decode_file(speech_wav, r.audio_rate)) > 0.6

        # The mouth moves while it speaks, and rests in the silence after.
        idle = [f for t, f in zip(r.video_times, r.frames, strict=True) if t < sent][-1].astype(np.int16)
        _, speaking = mouth_motion(r, started, ended, idle)
        _, resting = mouth_motion(r, ended + 0.2, time.monotonic(), idle)
        assert (speaking > MOVING).mean() > 0.3
        assert len(resting) >= 5 and resting.max() < MOVING / 2

        # Mouth motion follows the audio envelope (cross-correlation lag).
        offset = av_offset_ms(r, sent, ended + 0.3, idle)
        assert offset is not None and abs(offset) <= 80

        state = await client.state()
        assert state["state"] == "idle" and state["stalls"] == 0
    finally:
        await client.close()


async def test_interrupt_returns_to_idle_and_reports_the_position(server, speech_wav):
    client = await connected(server)
    try:
        await client.wait_event("welcome_ended", timeout=30)
        long_speech = speech_wav.read_bytes()
        first, _ = await client.speak(long_speech, "audio/wav")
        second, _ = await client.speak(long_speech, "audio/wav")
        await client.wait_event("speaking_started", first["utterance_id"])
        await client.wait_frames(15)
        reply = await client.interrupt()
        at = time.monotonic()
        stopped = {e["utterance_id"]: e["position_s"] for e in reply["interrupted"]}
        assert 0.3 < stopped[first["utterance_id"]] < first["duration_s"]
        assert stopped[second["utterance_id"]] == 0.0
        await client.wait_event("interrupted", first["utterance_id"])
        await client.wait_frames(15)
        _, rms = audio_envelope(client.received, at + 0.2, time.monotonic())
        assert rms.max() < SPEECH_RMS  # speech stopped (0.2 s covers what was in flight)
        state = await client.state()
        assert state["state"] == "idle" and state["queued_seconds"] == 0
        assert not any(
            e.get("type") == "speaking_ended"
            for _, e in client.received.events
            if e.get("utterance_id") == second["utterance_id"]
        )
    finally:
        await client.close()


async def test_two_sessions_stay_independent(server, speech_wav):
    a, b = await connected(server), await connected(server)
    try:
        await b.wait_event("welcome_ended", timeout=30)
        quiet_from = time.monotonic()
        _reply, _, _, _ = await speak_and_wait(a, speech_wav)
        _, rms_b = audio_envelope(b.received, quiet_from, time.monotonic())
        assert len(rms_b) > 50 and rms_b.max() < SPEECH_RMS
        assert not any(e.get("type") == "speaking_started" for _, e in b.received.events)
        with pytest.raises(RuntimeError, match="401"):  # a's token does not open b
            await a.call("GET", f"/api/sessions/{b.session_id}")
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_live_pcm_stream_over_the_websocket(server, speech_wav):
    client = await connected(server)
    try:
        await client.wait_event("welcome_ended", timeout=30)
        pcm = (decode_file(speech_wav, 16000) * 32767).astype("<i2").tobytes()
        async with aiohttp.ClientSession() as http:
            url = f"{server.url}/api/sessions/{client.session_id}/audio?token={client.token}"
            async with http.ws_connect(url) as ws:
                await ws.send_json({"type": "start", "sample_rate": 16000})
                started = await ws.receive_json()
                assert started["type"] == "started"
                for i in range(0, len(pcm), 3200):  # 100 ms chunks, as a streaming TTS sends
                    await ws.send_bytes(pcm[i : i + 3200])
                await ws.send_json({"type": "end"})
                events = []
                while not any(e.get("type") == "speaking_ended" for e in events):
                    events.append(await asyncio.wait_for(ws.receive_json(), 30))
        kinds = [e["type"] for e in events]
        assert kinds.index("ended") < kinds.index("speaking_ended")
        assert "speaking_started" in kinds
        started_event = next(e for e in events if e["type"] == "speaking_started")
        assert started_event["session_id"] == client.session_id  # the session's events, as JSON
        ended = next(e for e in events if e["type"] == "ended")
        assert ended["duration_s"] == pytest.approx(len(pcm) / 2 / 16000, abs=0.05)
    finally:
        await client.close()


async def test_bad_input_gets_a_clear_4xx_and_the_server_carries_on(server, speech_wav):
    client = await connected(server)
    sid, auth = client.session_id, {"Authorization": f"Bearer {client.token}"}
    cases = [
        (
            "POST",
            f"/api/sessions/{sid}/speak",
            {"data": b"\x00garbage" * 100, "headers": {**auth, "Content-Type": "audio/wav"}},
            400,
        ),
        ("POST", f"/api/sessions/{sid}/speak", {"data": b"", "headers": {**auth, "Content-Type": "audio/wav"}}, 400),
        (
            "POST",
            f"/api/sessions/{sid}/speak",
            {"data": b"hello", "headers": {**auth, "Content-Type": "text/plain"}},
            415,
        ),
        (
            "POST",
            f"/api/sessions/{sid}/speak",
            {"data": b"\x00\x01\x02", "headers": {**auth, "Content-Type": "audio/L16;rate=16000"}},
            400,
        ),
        (
            "POST",
            f"/api/sessions/{sid}/speak",
            {"data": bytes(2 * 8000 * 121), "headers": {**auth, "Content-Type": "audio/L16;rate=8000"}},
            413,
        ),
        (
            "POST",
            f"/api/sessions/{sid}/speak",
            {"data": bytes(21 * 1024 * 1024), "headers": {**auth, "Content-Type": "audio/wav"}},
            413,
        ),
        (
            "POST",
            f"/api/sessions/{sid}/speak",
            {"data": b"\x00" * 4, "headers": {"Authorization": "Bearer wrong", "Content-Type": "audio/wav"}},
            401,
        ),
        ("POST", f"/api/sessions/{sid}/interrupt", {"headers": {}}, 401),
        ("POST", "/api/sessions", {"json": {"template": "nobody", "sdp": "v=0"}}, 404),
        ("POST", "/api/sessions", {"json": {"template": "../etc", "sdp": "v=0"}}, 400),
        ("POST", "/api/sessions", {"json": {"template": TEMPLATE, "sdp": "v=0\r\nnot sdp"}}, 400),
        ("POST", "/api/sessions", {"json": {"template": TEMPLATE, "sdp": 42}}, 400),
        ("POST", "/api/sessions", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ("GET", "/api/sessions/../../etc/passwd", {}, 404),
        ("GET", "/api/templates/..%2F..%2Fetc/preview.jpg", {}, 400),
        ("GET", "/..%2Fpyproject.toml", {}, 404),
        ("POST", f"/api/sessions/{sid}/say", {"json": {"text": ""}, "headers": auth}, 400),
        (
            "POST",
            "/api/sessions",
            {"json": {"template": TEMPLATE, "sdp": "v=0"}, "headers": {"Origin": "http://evil.example"}},
            403,
        ),
        ("GET", "/api/templates", {"headers": {"Host": "rebound.example:8080"}}, 403),
        ("GET", f"/api/sessions/{sid}", {"headers": {"Authorization": "Bearer \u00e9t\u00e9"}}, 401),
    ]
    try:
        async with aiohttp.ClientSession() as http:
            for method, path, kwargs, status in cases:
                async with http.request(method, server.url + path, **kwargs) as r:
                    body = await r.json(content_type=None)
                    assert r.status == status, (method, path, r.status, body)
                    assert isinstance(body.get("error"), str) and body["error"], (path, body)
        # The session and the server carry on.
        reply, _, _, _ = await speak_and_wait(client, speech_wav)
        assert reply["duration_s"] > 1
        async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as r:
            assert r.status == 200
    finally:
        await client.close()


async def test_an_offer_whose_media_has_no_direction_is_bad_input(server):
    """Found by bench/fuzz.py: aiortc takes such an offer, then fails to answer it (a 500)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    garbled = pc.localDescription.sdp.replace("a=recvonly", "a=rec\ufffdonly")
    await pc.close()
    async with aiohttp.ClientSession() as http:
        for path, kwargs in (
            (f"/whep/{TEMPLATE}", {"data": garbled.encode(), "headers": {"Content-Type": "application/sdp"}}),
            ("/api/sessions", {"json": {"template": TEMPLATE, "sdp": garbled}}),
        ):
            async with http.post(server.url + path, **kwargs) as r:
                body = await r.json(content_type=None)
                assert r.status == 400 and "direction" in body["error"], (path, r.status, body)


async def test_an_offer_with_an_audio_line_aiortc_cannot_parse_is_bad_input(server):
    """Found by bench/fuzz.py: an m-line aiortc's parser asserts on gave a 500 once the offer's
    audio direction was read (for the microphone) before the offer was applied."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    await pc.close()
    audio_line = next(line for line in offer.splitlines() if line.startswith("m=audio "))
    broken = offer.replace(audio_line, "m=audio 9 UDP/TLS/RTP/SAVPF")  # no formats: the parser asserts
    async with aiohttp.ClientSession() as http:
        for path, kwargs in (
            (f"/whep/{TEMPLATE}", {"data": broken.encode(), "headers": {"Content-Type": "application/sdp"}}),
            ("/api/sessions", {"json": {"template": TEMPLATE, "sdp": broken}}),
        ):
            async with http.post(server.url + path, **kwargs) as r:
                body = await r.json(content_type=None)
                assert r.status == 400 and "could not be parsed" in body["error"], (path, r.status, body)


async def test_stats_metrics_and_health(server, speech_wav):
    client = await connected(server)
    try:
        await speak_and_wait(client, speech_wav)
        async with aiohttp.ClientSession() as http:
            for path in ("/api/stats", "/api/musetalk/stats"):
                async with http.get(server.url + path) as r:
                    stats = await r.json()
                assert stats["totalRequests"] >= 1 and stats["completedRequests"] >= 1
                assert stats["completionRate"].endswith("%")
                assert float(stats["completionRate"][:-1]) > 0
                assert stats["pythonEngineStatus"] == "running"
                assert stats["templateUsage"][TEMPLATE] >= 1
                assert stats["renderer"] == "lite"
                assert stats["devices"][0]["alive"] and stats["devices"][0]["frames"] > 0
                assert stats["latency"]["count"] >= 1 and stats["latency"]["p50_ms"] > 0
            async with http.get(server.url + "/metrics") as r:
                text = await r.text()
            assert "streamer_first_speech_frame_seconds_count" in text
            assert 'streamer_worker_alive{device="cpu",index="0"} 1.0' in text
            async with http.get(server.url + "/readyz") as r:
                assert r.status == 200 and (await r.json())["ready"]
    finally:
        await client.close()


async def test_session_limit_is_a_429_not_a_crash(server):
    clients = [await connected(server) for _ in range(4)]
    try:
        extra = Client(server.url)
        with pytest.raises(RuntimeError, match="429"):
            await extra.connect(TEMPLATE)
        await extra.close()
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    again = await connected(server)  # closing frees the slots
    await again.close()


def test_key_is_required_to_bind_beyond_loopback():
    from streamer.config import load_settings
    from streamer.errors import BadInput

    with pytest.raises(BadInput, match="key"):
        load_settings(cli={"host": "0.0.0.0"}, environ={})
    assert load_settings(cli={"host": "0.0.0.0", "key": "k"}, environ={}).key == "k"
