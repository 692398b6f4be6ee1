"""`asr = "openai"`: `POST {asr_url}/audio/transcriptions` (multipart `file`, `model`,
`language`), which OpenAI, faster-whisper servers, vLLM and SenseVoice servers speak."""

from __future__ import annotations

import asyncio
import io
import logging
import wave

import aiohttp
import numpy as np

log = logging.getLogger(__name__)

TIMEOUT_S = 30.0


def wav_bytes(audio: np.ndarray, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(audio.astype(np.int16).tobytes())
    return out.getvalue()


class OpenAIRecognizer:
    name = "openai"

    def __init__(self, url: str, model: str, language: str, workers: int) -> None:
        self._url = url.rstrip("/") + "/audio/transcriptions"
        self._model = model
        self._language = language
        self._slots = asyncio.Semaphore(workers)
        self._http: aiohttp.ClientSession | None = None

    def warm(self) -> None:
        pass

    def try_stream(self) -> None:
        """Whole turns only: the endpoint takes a file."""

    async def transcribe(self, audio: np.ndarray) -> str:
        """The text, or empty when the server fails (logged: the turn is lost, the session goes on)."""
        form = aiohttp.FormData()
        form.add_field("file", wav_bytes(audio), filename="turn.wav", content_type="audio/wav")
        form.add_field("model", self._model)
        if self._language:
            form.add_field("language", self._language)
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        async with self._slots:
            try:
                async with self._http.post(self._url, data=form) as reply:
                    if reply.status != 200:
                        log.error("asr: %s answered %d", self._url, reply.status)
                        return ""
                    body = await reply.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.error("asr: %s failed: %s", self._url, type(exc).__name__)
                return ""
        text = body.get("text", "") if isinstance(body, dict) else ""
        return text.strip() if isinstance(text, str) else ""

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
