"""The JSON API: templates, sessions, speech in (upload, TTS, live PCM), interrupt."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import cv2
from aiohttp import web

from streamer.core.events import to_json
from streamer.errors import BadInput, Conflict, NotFound, NotReady, StreamerError, Unauthorized, UnsupportedMedia
from streamer.reply.speech import synthesize as speech_pcm
from streamer.server import lifetime, live
from streamer.server.auth import bearer_matches
from streamer.server.guard import authorize_open, authorize_session
from streamer.server.http import read_capped
from streamer.server.keys import AUDIO_DECODERS, SESSIONS, SETTINGS, STARTUP
from streamer.server.limits import check_sockets
from streamer.server.live import LiveSocket
from streamer.server.sessions import SessionManager
from streamer.units import FPS
from streamer.webrtc.session import Session

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
SESSION_ID = re.compile(r"[0-9a-f]{16}")
CHAT_MAX_CHARS = 2000


def _session_id(request: web.Request) -> str:
    session_id = request.match_info["session_id"]
    if not SESSION_ID.fullmatch(session_id):
        raise NotFound(f"no session {session_id!r}")
    return session_id


def _authorized(request: web.Request) -> Session:
    return authorize_session(request, _session_id(request))


async def read_json(request: web.Request) -> dict[str, Any]:
    """A JSON object body of at most `max_json_bytes` (an SDP offer included: 413 past it)."""
    if request.content_type != "application/json":
        raise UnsupportedMedia("send application/json")
    data = await read_capped(request, request.app[SETTINGS].max_json_bytes, "the JSON body")
    try:
        body = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
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
    for tid, name in sorted(startup.discovered.items()):
        if tid not in manager.templates:
            reason = "could not be prepared (the server log says why)" if tid in startup.failed else None
            listed.append({"id": tid, "name": name, "ready": False, "error": reason})
    return web.json_response({"templates": listed, "renderer": manager.pool.renderer})


@routes.get("/api/templates/{template_id}/preview.jpg")
async def preview(request: web.Request) -> web.Response:
    template = request.app[SESSIONS].template(request.match_info["template_id"])
    _ok, data = cv2.imencode(".jpg", template.frames[0], [cv2.IMWRITE_JPEG_QUALITY, 85])
    return web.Response(body=data.tobytes(), content_type="image/jpeg", headers={"Cache-Control": "max-age=300"})


@routes.post("/api/sessions")
async def open_session(request: web.Request) -> web.Response:
    grant = await authorize_open(request)  # before the body is read
    body = await read_json(request)
    if body.get("type", "offer") != "offer":
        raise BadInput("`type` must be offer")
    opened = await lifetime.open_session(request, body.get("template"), body.get("sdp"), grant)
    chat = request.app[SESSIONS].replies.available
    return web.json_response(
        {"session_id": opened.session_id, "token": opened.token, "sdp": opened.sdp, "type": opened.type, "chat": chat},
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
    audio48k, audio16k = await request.app[AUDIO_DECODERS].speech(data, content_type, settings.max_audio_seconds)
    utterance = session.conversation.speak(audio16k, audio48k, arrived=arrived)
    return web.json_response(
        {"utterance_id": utterance.id, "duration_s": round((utterance.total_units or 0) / FPS, 3)}, status=202
    )


@routes.post("/api/sessions/{session_id}/speak")
async def speak(request: web.Request) -> web.Response:
    session = _authorized(request)
    with lifetime.upload(request, session.id):
        data = await read_capped(request, request.app[SETTINGS].max_audio_bytes, "the audio body")
        return await _speak_bytes(request, session, data, request.headers.get("Content-Type"))


def _text(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str):
        raise BadInput("`text` must be a string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput("`text` is not valid Unicode (a lone surrogate?)") from None
    return text


@routes.post("/api/sessions/{session_id}/say")
async def say(request: web.Request) -> web.Response:
    """Speak `text` with the configured TTS engine (the reply engine's), in the template's voice."""
    session = _authorized(request)
    with lifetime.upload(request, session.id):
        text = _text(await read_json(request))
        replies = request.app[SESSIONS].replies
        speech = replies.speech(replies.persona(session.template.id).voice)
        try:
            pcm = await speech_pcm(speech, text)
        except StreamerError as exc:
            if exc.status < 500:
                raise
            log.error("session %s: speech synthesis failed: %s", session.id, exc)  # the engine's text stays here
            raise type(exc)("speech synthesis failed (the server log says why)") from None
        return await _speak_bytes(request, session, pcm, f"audio/pcm;rate={speech.sample_rate}")


@routes.post("/api/sessions/{session_id}/chat")
async def chat(request: web.Request) -> web.Response:
    """A question for the reply engine; the answer is spoken, its text sent as events."""
    session = _authorized(request)
    text = _text(await read_json(request))
    if not text.strip() or len(text) > CHAT_MAX_CHARS:
        raise BadInput(f"`text` must hold 1 to {CHAT_MAX_CHARS} characters, not {len(text.strip())}")
    if session.replier is None:
        raise Conflict("no reply engine: set llm_url (an OpenAI-compatible base URL ending in /v1) to chat")
    if request.app[STARTUP].draining:
        raise NotReady("the server is shutting down: it takes no more speech")
    turn_id = await session.replier.start_turn(text.strip())
    return web.json_response({"turn_id": turn_id}, status=202)


@routes.post("/api/sessions/{session_id}/interrupt")
async def interrupt(request: web.Request) -> web.Response:
    events = _authorized(request).interrupt()
    return web.json_response({"interrupted": [to_json(e) for e in events]})


@routes.get("/api/sessions/{session_id}/audio")
async def audio_socket(request: web.Request) -> web.WebSocketResponse:
    """Live PCM in, session events out (streamer/server/live.py). The token comes in
    `Authorization`, or (browsers) as `token.<token>` in `Sec-WebSocket-Protocol` beside
    `streamer-audio`; `?token=` still works, for a session token only, never the server key."""
    session = _socket_session(request)
    settings = request.app[SETTINGS]
    held = request.app[SESSIONS].held(session.id)
    check_sockets(settings, held.sockets)
    # Messages up to 4× the caps get a JSON 413 and the socket stays open; larger ones close it (1009).
    largest = 4 * max(settings.max_ws_bytes, settings.max_json_bytes)
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=largest, protocols=(live.PROTOCOL,))
    held.sockets += 1
    try:
        await ws.prepare(request)
        await LiveSocket(ws, session, settings, request.app[STARTUP]).run()
    finally:
        held.sockets -= 1
    return ws


def _socket_session(request: web.Request) -> Session:
    session_id = _session_id(request)
    if "Authorization" in request.headers:
        return _authorized(request)
    token = live.protocol_token(request.headers.get("Sec-WebSocket-Protocol")) or request.query.get("token")
    session = request.app[SESSIONS].get(session_id)
    if not bearer_matches(f"Bearer {token}" if token else None, session.token):  # the session's token only
        raise Unauthorized(
            "this socket needs its session's token (Sec-WebSocket-Protocol: streamer-audio, token.<token>)"
        )
    return session
