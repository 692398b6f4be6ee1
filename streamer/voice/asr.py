"""Speech recognition, pluggable (`asr`): `pocketsphinx` (embedded, US English), `openai`
(an OpenAI-compatible `/audio/transcriptions` server: faster-whisper, vLLM, SenseVoice, …) or
`none`. One recognizer per server, bounded (`asr_workers`): pocketsphinx's processes are in
sphinx.py.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from streamer.config import Settings
from streamer.voice.sphinx import SphinxRecognizer


class RecognitionStream(Protocol):
    """One turn recognised while it is spoken: audio in as it comes, words out at any time."""

    def feed(self, audio: np.ndarray) -> None: ...

    async def partial(self) -> str:
        """The words so far."""
        ...

    async def finish(self) -> str:
        """The turn's words; the stream is done."""
        ...


class Recognizer(Protocol):
    name: str

    async def transcribe(self, audio: np.ndarray) -> str:
        """The words in `audio` (int16, 16 kHz mono); empty when there are none."""
        ...

    def try_stream(self) -> RecognitionStream | None:
        """A stream for a turn being spoken, when this engine streams and has a free slot."""
        ...

    def warm(self) -> None:
        """Get ready in the background (start workers), so the first turn does not wait."""
        ...

    async def close(self) -> None: ...


class NoRecognizer:
    """`asr = "none"`: turns are detected, no words are ever found."""

    name = "none"

    async def transcribe(self, audio: np.ndarray) -> str:
        return ""

    def try_stream(self) -> RecognitionStream | None:
        return None

    def warm(self) -> None:
        pass

    async def close(self) -> None:
        pass


def make_recognizer(settings: Settings) -> Recognizer:
    if settings.asr == "none":
        return NoRecognizer()
    if settings.asr == "openai":
        from streamer.voice.openai_asr import OpenAIRecognizer

        return OpenAIRecognizer(settings.asr_url, settings.asr_model, settings.asr_language, settings.asr_workers)
    return SphinxRecognizer(settings.asr_workers, settings.asr_streams_per_worker)
