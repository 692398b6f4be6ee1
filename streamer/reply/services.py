"""What every session's reply engine shares: one HTTP connection pool (to the LLM and the
TTS servers), the settings, and each template's persona (sidecar `persona` and `voice`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import aiohttp

from streamer.config import Settings
from streamer.reply.llm import ChatStream, LlmConfig
from streamer.reply.speech import Speech, make_speech

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Persona:
    prompt: str
    voice: str


class ReplyServices:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._llm = LlmConfig.from_settings(settings)
        self._http: aiohttp.ClientSession | None = None

    @property
    def available(self) -> bool:
        """Whether a reply engine is configured (`llm_url`)."""
        return bool(self.settings.llm_url)

    def http(self) -> aiohttp.ClientSession:
        """The server's one client session (made on first use, inside the event loop)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._http

    def chat(self, messages: list[dict[str, str]]) -> ChatStream:
        return ChatStream(self.http(), self._llm, messages)

    def speech(self, voice: str) -> Speech:
        return make_speech(self.settings, self.http(), voice)

    def persona(self, template_id: str) -> Persona:
        """The template sidecar's `persona` and `voice` over `llm_system_prompt` and `tts_voice`."""
        prompt, voice = self.settings.llm_system_prompt, self.settings.tts_voice
        side = self.settings.templates_dir / f"{template_id}.json"
        try:
            meta = json.loads(side.read_text()) if side.is_file() else {}
        except (OSError, ValueError) as exc:
            log.warning("template %s: sidecar unreadable for the persona (%s)", template_id, exc)
            meta = {}
        if isinstance(meta, dict):
            prompt = str(meta.get("persona") or prompt)
            voice = str(meta.get("voice") or voice)
        return Persona(prompt, voice)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
