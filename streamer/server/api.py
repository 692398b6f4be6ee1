"""The JSON API: templates, sessions, speech in (upload, TTS, live PCM), interrupt."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

import cv2
from aiohttp import WSMsgType, web

from streamer import audio, tts
from streamer.errors import BadInput, NotFound, StreamerError, UnsupportedMedia
from streamer.events import to_json
from streamer.server.auth import require_key
from streamer.server.keys import DECODERS, SESSIONS, SETTINGS, STARTUP
from streamer.server.sessions import SessionManager
from streamer.session import Session
from streamer.tasks import TaskSet
from streamer.units import FPS, MODEL_RATE, OUT_RATE

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
SESSION_ID = re.compile(r"[0-9a-f]{16}")


def _session_id(request: web.Request) -> str:
    session_id = request.match_info["session_id"]
    if not SESSION_ID.fullmatch(session_id):
        raise NotFound(f"no session {session_id!r}")
    return session_id


def _authorized(request: web.Request) -> Session:
    return request.app[SESSIONS].authorize(_session_id(request), request.headers.get("Authorization"))


async def _json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise UnsupportedMedia("send application/json")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadInput("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadInput("the body must be a JSON object")
    return body


def _template_json(manager: SessionManager, template_id: str) -> dict[str, Any]:
    t = manager.templates[template_id]
    return {
        "id": t.id,
        "name": t.name,
        "kind": t.kind,
        "frames": t.frame_count,
        "width": t.width,
        "height": t.height,
        "welcome_seconds": round(t.welcome.seconds, 2) if t.welcome else 0.0,
        "welcome_text": t.welcome_text,
        "faces": t.faces,
        "degraded": t.degraded,
        "ready": True,
    }


@routes.get("/api/templates")
async def list_templates(request: web.Request) -> web.Response:
    """Ready templates, then those still preparing (or failed, with the reason)."""
    manager, startup = request.app[SESSIONS], request.app[STARTUP]
    listed = [_template_json(manager, tid) for tid in sorted(manager.templates)]
    for tid, name in sorted(startup["discovered"].items()):
        if tid not in manager.templates:
            listed.append({"id": tid, "name": name, "ready": False, "error": startup["failed"].get(tid)})
    return web.json_response({"templates": listed, "renderer": manager.pool.renderer})


@routes.get("/api/templates/{template_id}/preview.jpg")
async def preview(request: web.Request) -> web.Response:
    template = request.app[SESSIONS].template(request.match_info["template_id"])
    ok, data = cv2.imencode(".jpg", template.frames[0], [cv2.IMWRITE_JPEG_QUALITY, 85])
    return web.Response(body=data.tobytes(), content_type="image/jpeg", headers={"Cache-Control": "max-age=300"})


@routes.post("/api/sessions")
async def open_session(request: web.Request) -> web.Response:
    require_key(request.headers.get("Authorization"), request.app[SETTINGS].key)
    body = await _json(request)
    if body.get("type", "offer") != "offer":
        raise BadInput("`type` must be offer")
    opened = await request.app[SESSIONS].open(body.get("template"), body.get("sdp"))
    return web.json_response(
        {"session_id": opened.session_id, "token": opened.token, "sdp": opened.sdp, "type": opened.type},
        status=201,
    )


@routes.get("/api/sessions/{session_id}")
async def describe(request: web.Request) -> web.Response:
    return web.json_response(_authorized(request).describe())


@routes.delete("/api/sessions/{session_id}")
async def close(request: web.Request) -> web.Response:
    session = _authorized(request)
    await request.app[SESSIONS].close(session.id)
    return web.json_response({"session_id": session.id, "closed": True})


async def _speak_bytes(request: web.Request, session: Session, data: bytes, content_type: str | None) -> web.Response:
    settings = request.app[SETTINGS]
    arrived = time.monotonic()
    loop = asyncio.get_running_loop()
    decoders = request.app[DECODERS]
    audio48k = await loop.run_in_executor(decoders, audio.decode, data, content_type, OUT_RATE, settings.max_audio_seconds)
    audio16k = await loop.run_in_executor(decoders, audio.resample, audio48k, OUT_RATE, MODEL_RATE)
    utterance = session.conversation.speak(audio16k, audio48k, arrived=arrived)
    return web.json_response(
        {"utterance_id": utterance.id, "duration_s": round((utterance.total_units or 0) / FPS, 3)}, status=202
    )


@routes.post("/api/sessions/{session_id}/speak")
async def speak(request: web.Request) -> web.Response:
    session = _authorized(request)
    data = await request.read()
    return await _speak_bytes(request, session, data, request.headers.get("Content-Type"))


@routes.post("/api/sessions/{session_id}/say")
async def say(request: web.Request) -> web.Response:
    session = _authorized(request)
    text = (await _json(request)).get("text")
    if not isinstance(text, str):
        raise BadInput("`text` must be a string")
    settings = request.app[SETTINGS]
    wav = await asyncio.get_running_loop().run_in_executor(request.app[DECODERS], tts.synthesize, text, settings)
    return await _speak_bytes(request, session, wav, "audio/wav")


@routes.post("/api/sessions/{session_id}/interrupt")
async def interrupt(request: web.Request) -> web.Response:
    events = _authorized(request).conversation.interrupt()
    return web.json_response({"interrupted": [to_json(e) for e in events]})


@routes.get("/api/sessions/{session_id}/audio")
async def audio_socket(request: web.Request) -> web.WebSocketResponse:
    """Live PCM in (start, s16le chunks, end; repeat), session events out."""
    token = request.query.get("token")
    header = request.headers.get("Authorization") or (f"Bearer {token}" if token else None)
    session = request.app[SESSIONS].authorize(_session_id(request), header)
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=1 << 20)
    await ws.prepare(request)

    sends = TaskSet(f"audio-socket-{session.id}")

    def forward(event: dict[str, Any]) -> None:
        if not ws.closed:
            sends.spawn(ws.send_json(event), name="send-event")

    session.listeners.add(forward)
    stream = None
    try:
        async for msg in ws:
            try:
                if msg.type == WSMsgType.TEXT:
                    command = json.loads(msg.data)
                    kind = command.get("type") if isinstance(command, dict) else None
                    if kind == "start":
                        if stream is not None and not stream.ended:
                            raise BadInput("a stream is open: send end first")
                        stream = session.conversation.open_stream(command.get("sample_rate"))
                        await ws.send_json({"type": "started", "utterance_id": stream.utterance_id})
                    elif kind == "end":
                        if stream is None or stream.dropped:
                            raise BadInput("no stream is open")
                        seconds = stream.end()
                        await ws.send_json({"type": "ended", "utterance_id": stream.utterance_id, "duration_s": seconds})
                        stream = None
                    elif kind == "interrupt":
                        session.conversation.interrupt()
                        stream = None
                    else:
                        raise BadInput("messages are start, end or interrupt")
                elif msg.type == WSMsgType.BINARY:
                    if stream is None:
                        raise BadInput("send start before audio")
                    stream.push(msg.data)
            except json.JSONDecodeError:
                await ws.send_json({"type": "error", "error": "text messages must be JSON"})
            except StreamerError as exc:
                await ws.send_json({"type": "error", "error": str(exc), "status": exc.status})
    finally:
        session.listeners.discard(forward)
        await sends.close()
        if stream is not None:
            stream.end()  # keep what was sent
    return ws
