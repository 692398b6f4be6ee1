"""Headless viewer (a real aiortc peer): connect, speak, record what arrives, measure it.

Used by the integration tests, the benchmarks and `python run.py client`. What it measures
comes from the received stream only: frame arrival times, the audio that arrived, and the
mouth motion visible in the frames (the difference from the idle face).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import time
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streamer.errors import StreamerError
from streamer.headless.measure import (
    ANALYSIS_SIZE,
    MOTION_THRESHOLD,
    Received,
    audio_envelope,
    av_offset_ms,
    first_after,
    mouth_motion,
)
from streamer.headless.recording import Recorder
from streamer.webrtc.mic import hold_less

log = logging.getLogger(__name__)


class Client:
    def __init__(self, server: str, key: str | None = None, audio_hold: int | None = None) -> None:
        """`audio_hold`: audio frames the receiver's jitter buffer holds back (None: aiortc's 4,
        80 ms; 1 is closer to a browser's adaptive buffer on loopback; 0 gives each packet out as
        it arrives, as the server's microphone receiver does)."""
        self.server = server.rstrip("/")
        self.key = key
        self.audio_hold = audio_hold
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no outside STUN host
        self.received = Received()
        self.session_id = ""
        self.token = ""
        self.answer_sdp = ""
        self.opened_at = 0.0
        self._http: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._waiters: list[tuple[str, str | None, asyncio.Future[dict[str, Any]]]] = []
        self._recorder: Recorder | None = None
        self._frame_arrived = asyncio.Event()

    # --- connection ----------------------------------------------------------------------

    async def connect(self, template: str, record: Path | None = None, mic: MediaStreamTrack | None = None) -> None:
        self._http = aiohttp.ClientSession()
        self._recorder = Recorder(record) if record else None
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver(mic or "audio", direction="sendrecv" if mic else "recvonly")
        channel = self.pc.createDataChannel("events")
        channel.on("message", self._on_event)

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio" and self.audio_hold is not None:
                receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)
                hold_less(receiver, self.audio_hold)
            read = self._read_video if track.kind == "video" else self._read_audio
            self._tasks.append(asyncio.ensure_future(read(track)))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.opened_at = time.monotonic()
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        body = {"template": template, "sdp": self.pc.localDescription.sdp, "type": "offer"}
        reply = await self.call("POST", "/api/sessions", json=body, headers=headers, expect=201)
        self.session_id, self.token = reply["session_id"], reply["token"]
        self.answer_sdp = reply["sdp"]
        await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], reply["type"]))

    async def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> dict[str, Any]:
        assert self._http is not None
        headers = kwargs.pop("headers", None) or {"Authorization": f"Bearer {self.token}"}
        async with self._http.request(method, self.server + path, headers=headers, **kwargs) as r:
            body: dict[str, Any] = await r.json(content_type=None)
            if r.status != expect:
                raise RuntimeError(f"{method} {path}: {r.status} {body}")
            return body

    def _on_event(self, message: str) -> None:
        event = json.loads(message)
        self.received.events.append((time.monotonic(), event))
        for waiter in list(self._waiters):
            kind, uid, future = waiter
            if _matches(event, kind, uid) and not future.done():
                future.set_result(event)
                self._waiters.remove(waiter)

    async def wait_event(self, kind: str, utterance_id: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """The first event of `kind` (of that utterance, or of that turn: `utterance_id` is
        matched against a reply event's `turn_id` too), received or to come."""
        for _, event in self.received.events:
            if _matches(event, kind, utterance_id):
                return event
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((kind, utterance_id, future))
        return await asyncio.wait_for(future, timeout)

    async def wait_frames(self, count: int, timeout: float = 30.0) -> None:
        """Wait until `count` more video frames have arrived."""
        target = len(self.received.frames) + count

        async def arrived() -> None:
            while len(self.received.frames) < target:
                self._frame_arrived.clear()
                await self._frame_arrived.wait()

        await asyncio.wait_for(arrived(), timeout)

    async def _read_video(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            at = time.monotonic()
            self.received.size = (frame.width, frame.height)
            grey = frame.to_ndarray(format="gray")
            self.received.frames.append(cv2.resize(grey, (ANALYSIS_SIZE, ANALYSIS_SIZE), interpolation=cv2.INTER_AREA))
            self.received.video_times.append(at)
            self._frame_arrived.set()
            if self._recorder is not None:
                self._recorder.video(frame, at)  # on the loop: the muxer is not thread-safe

    async def _read_audio(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            samples = frame.to_ndarray()
            channels = len(frame.layout.channels)
            mono = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples.reshape(-1)
            self.received.audio_rate = frame.sample_rate
            self.received.audio.append(mono.astype(np.int16))
            self.received.audio_times.append(time.monotonic())
            if self._recorder is not None:
                self._recorder.audio(frame)

    # --- control -------------------------------------------------------------------------

    async def speak(self, data: bytes, content_type: str) -> tuple[dict[str, Any], float]:
        """Send audio; returns the reply and the time it was sent."""
        sent = time.monotonic()
        reply = await self.call(
            "POST",
            f"/api/sessions/{self.session_id}/speak",
            expect=202,
            data=data,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type},
        )
        return reply, sent

    async def speak_file(self, path: Path) -> tuple[dict[str, Any], float]:
        content_type = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
        return await self.speak(Path(path).read_bytes(), content_type)

    async def chat(self, text: str) -> tuple[str, float]:
        """Ask the reply engine; returns the turn id and the time it was sent."""
        sent = time.monotonic()
        reply = await self.call("POST", f"/api/sessions/{self.session_id}/chat", expect=202, json={"text": text})
        return str(reply["turn_id"]), sent

    async def interrupt(self) -> dict[str, Any]:
        return await self.call("POST", f"/api/sessions/{self.session_id}/interrupt")

    async def state(self) -> dict[str, Any]:
        return await self.call("GET", f"/api/sessions/{self.session_id}")

    async def close(self) -> None:
        if self._http is not None and self.session_id:
            with contextlib.suppress(RuntimeError, aiohttp.ClientError):
                await self.call("DELETE", f"/api/sessions/{self.session_id}")
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._recorder is not None:
            self._recorder.close()
        if self._http is not None:
            await self._http.close()


def _matches(event: dict[str, Any], kind: str, uid: str | None) -> bool:
    return event.get("type") == kind and uid in (None, event.get("utterance_id"), event.get("turn_id"))


# --- measurements ----------------------------------------------------------------------------


def figures(client: Client, spoke_at: float | None, speech_end: float | None) -> dict[str, Any]:
    r = client.received
    out: dict[str, Any] = {
        "session_id": client.session_id,
        "frames": len(r.frames),
        "size": list(r.size) if r.size else None,
        "time_to_first_frame_ms": round((r.video_times[0] - client.opened_at) * 1000, 1) if r.video_times else None,
    }
    if len(r.video_times) > 1:
        span = r.video_times[-1] - r.video_times[0]
        gaps = np.diff(r.video_times)
        out["fps"] = round((len(r.video_times) - 1) / span, 2) if span > 0 else None
        out["freezes"] = int((gaps > 0.2).sum())
        out["max_frame_gap_ms"] = round(float(gaps.max()) * 1000, 1)
    if spoke_at is not None and r.frames:
        before = [f for t, f in zip(r.video_times, r.frames, strict=True) if t < spoke_at]
        reference = (before[-1] if before else r.frames[0]).astype(np.int16)
        end = speech_end or r.video_times[-1]
        vt, motion = mouth_motion(r, spoke_at, end + 0.5, reference)
        first_frame = first_after(list(vt), motion, spoke_at, MOTION_THRESHOLD)
        at, envelope = audio_envelope(r, spoke_at, end + 0.5)
        first_audio = first_after(list(at), envelope, spoke_at, 300.0)
        out["speak_to_first_speech_frame_ms"] = round((first_frame - spoke_at) * 1000, 1) if first_frame else None
        out["speak_to_first_speech_audio_ms"] = round((first_audio - spoke_at) * 1000, 1) if first_audio else None
        out["av_offset_ms"] = av_offset_ms(r, spoke_at, end + 0.5, reference)
    return out


async def run_client(
    server: str,
    template: str,
    speak: Path | None = None,
    record: Path | None = None,
    seconds: float | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Connect, wait for the welcome clip to end, speak a file, watch until it ends; the figures."""
    client = Client(server, key)
    spoke_at = speech_end = None
    try:
        await client.connect(template, record)
        await client.wait_frames(1)
        if speak is not None:
            await client.wait_event("welcome_ended", timeout=60)
            reply, spoke_at = await client.speak_file(speak)
            ended = await client.wait_event("speaking_ended", reply["utterance_id"], timeout=reply["duration_s"] + 30)
            speech_end = time.monotonic()
            log.info("utterance %s played (%.2f s)", ended["utterance_id"], ended["duration_s"])
        if seconds:
            await asyncio.sleep(seconds)
        state = await client.state()
        out = figures(client, spoke_at, speech_end)
        out.update({"stalls": state["stalls"], "renderer": state["renderer"]})
        return out
    finally:
        await client.close()


async def mint_grant(server: str, key: str, templates: list[str], ttl_s: float) -> str:
    """What a page's backend does: ask the keyed server for a single-use grant."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.rstrip("/") + "/api/grants",
            json={"templates": templates, "ttl_s": ttl_s},
            headers={"Authorization": f"Bearer {key}"},
        ) as reply,
    ):
        body = await reply.json(content_type=None)
        if reply.status != 201:
            raise StreamerError(f"{server} refused the grant ({reply.status}): {body.get('error', body)}")
        return str(body["grant"])
