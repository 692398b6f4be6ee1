"""Text to speech as a stream of s16le mono PCM chunks, so a sentence's first audio can play
before its synthesis ends. Engines: espeak-ng (a subprocess reading stdin, writing a WAV to
stdout), an OpenAI-compatible `/audio/speech` (pcm, 24 kHz), and piper (whole sentences)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol

import aiohttp

from streamer import tts
from streamer.errors import BadInput, NotReady, StreamerError
from streamer.settings_slices import ReplySettings

log = logging.getLogger(__name__)

CHUNK_BYTES = 4096
ESPEAK_RATE = 22050
OPENAI_RATE = 24000
WAV_HEADER_BYTES = 44
_VOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+\-/]*$")


class TtsError(StreamerError):
    status = 502


class Speech(Protocol):
    sample_rate: int

    def stream(self, text: str) -> AsyncIterator[bytes]:
        """s16le mono chunks at `sample_rate` (even lengths), as they are made."""
        ...

    async def warm(self) -> None:
        """Get ready for the next `stream` (an engine that has nothing to prepare returns)."""

    async def close(self) -> None: ...


class EspeakSpeech:
    """espeak-ng, one process a sentence; `warm` starts the next one ahead (voice loaded, waiting
    on stdin), which takes ~40 ms off each sentence's first audio on a busy machine."""

    def __init__(self, voice: str) -> None:
        if not _VOICE.match(voice):
            raise BadInput(f"invalid espeak-ng voice {voice!r}")
        self.voice = voice
        self.sample_rate = ESPEAK_RATE
        self._spare: asyncio.subprocess.Process | None = None
        self._warming = False

    async def _spawn(self) -> asyncio.subprocess.Process:
        try:
            return await asyncio.create_subprocess_exec(
                "espeak-ng", "--stdin", "-v", self.voice, "--stdout",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except OSError as exc:
            raise NotReady(f"cannot run espeak-ng: {exc}") from None

    async def warm(self) -> None:
        if self._warming or (self._spare is not None and self._spare.returncode is None):
            return
        self._warming = True
        try:
            proc = await self._spawn()
        finally:
            self._warming = False
        if self._spare is None:
            self._spare = proc
        else:
            await _end(proc)

    async def close(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            await _end(spare)

    async def stream(self, text: str) -> AsyncIterator[bytes]:
        proc, self._spare = self._spare, None
        if proc is None or proc.returncode is not None:
            proc = await self._spawn()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(text.encode())
            proc.stdin.close()
            header = await proc.stdout.readexactly(WAV_HEADER_BYTES)
            if header[:4] != b"RIFF" or int.from_bytes(header[24:28], "little") != ESPEAK_RATE:
                raise TtsError(f"espeak-ng voice {self.voice} does not speak 22050 Hz WAV")
            async for chunk in _even_chunks(proc.stdout.read):
                yield chunk
        except asyncio.IncompleteReadError:
            detail = (await proc.stderr.read()).decode(errors="replace").strip()[-200:] if proc.stderr else ""
            raise TtsError(f"espeak-ng produced no audio: {detail}") from None
        finally:
            await _end(proc)


async def _end(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()


class OpenAiSpeech:
    def __init__(self, http: aiohttp.ClientSession, url: str, model: str, voice: str, api_key: str | None) -> None:
        self._http = http
        self._url = url.rstrip("/") + "/audio/speech"
        self._body = {"model": model, "voice": voice, "response_format": "pcm"}
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.sample_rate = OPENAI_RATE

    async def warm(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def stream(self, text: str) -> AsyncIterator[bytes]:
        try:
            async with self._http.post(self._url, json={**self._body, "input": text}, headers=self._headers) as r:
                if r.status != 200:
                    detail = (await r.text())[:200].strip()
                    raise TtsError(f"the TTS at {self._url} answered {r.status}: {detail or r.reason}")
                async for chunk in _even_chunks(r.content.read):
                    yield chunk
        except aiohttp.ClientError as exc:
            raise TtsError(f"cannot reach the TTS at {self._url}: {type(exc).__name__} {exc}") from None


class PiperSpeech:
    """piper through streamer.tts (a whole sentence at a time, in a thread)."""

    def __init__(self, settings: ReplySettings) -> None:
        self._settings = settings
        self.sample_rate = _piper_rate(settings)

    async def warm(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def stream(self, text: str) -> AsyncIterator[bytes]:
        wav = await asyncio.get_running_loop().run_in_executor(None, tts.synthesize, text, self._settings)
        with wave.open(io.BytesIO(wav)) as w:
            if w.getframerate() != self.sample_rate or w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise TtsError(f"piper spoke {w.getframerate()} Hz, not {self.sample_rate} Hz mono s16")
            yield w.readframes(w.getnframes())


def _piper_rate(settings: ReplySettings) -> int:
    """The voice's rate from piper's `<voice>.onnx.json` beside it (22050 Hz when unreadable)."""
    try:
        config = json.loads(Path(f"{settings.piper_voice}.json").read_text())
        return int(config["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError):
        return ESPEAK_RATE


async def _even_chunks(read: Callable[[int], Awaitable[bytes]]) -> AsyncIterator[bytes]:
    """Chunks of whole samples (even lengths) from `read(n)` until it comes back empty."""
    odd = b""
    while True:
        data = odd + await read(CHUNK_BYTES)
        if len(data) == len(odd):
            return
        cut = len(data) - len(data) % 2
        odd = data[cut:]
        if cut:
            yield data[:cut]


def make_speech(settings: ReplySettings, http: aiohttp.ClientSession, voice: str) -> Speech:
    """The configured engine speaking with `voice` (the template's, else `tts_voice`)."""
    if settings.tts == "openai":
        return OpenAiSpeech(http, settings.tts_url, settings.tts_model, voice, settings.tts_api_key)
    engine = tts.backend(settings)
    if engine == "piper":
        return PiperSpeech(settings)
    if engine == "espeak":
        return EspeakSpeech(voice)
    if settings.tts == "none":
        raise NotReady('no TTS engine: tts = "none"')
    raise NotReady('no TTS engine: install espeak-ng, set piper_voice, or tts = "openai" with tts_url')


async def synthesize(speech: Speech, text: str) -> bytes:
    """A whole text's PCM (for `/say`), with `/say`'s limits."""
    text = text.strip()
    if not text:
        raise BadInput("empty text")
    if len(text) > tts.MAX_CHARS:
        raise BadInput(f"text of {len(text)} characters; the limit is {tts.MAX_CHARS}")
    pcm = b"".join([chunk async for chunk in speech.stream(text)])
    if not pcm:
        raise TtsError("the TTS engine produced no audio")
    log.info("tts: spoke %d characters (%.2f s)", len(text), len(pcm) / 2 / speech.sample_rate)
    return pcm
