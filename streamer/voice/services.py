"""What every listening session of a server shares: the recognizer and the VAD threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from streamer.config import Settings
from streamer.voice.asr import Recognizer, make_recognizer

VAD_THREADS = 2


class VoiceServices:
    def __init__(self, settings: Settings, recognizer: Recognizer | None = None) -> None:
        self.settings = settings
        self.recognizer = recognizer if recognizer is not None else make_recognizer(settings)
        self.vad_executor = ThreadPoolExecutor(max_workers=VAD_THREADS, thread_name_prefix="vad")

    async def close(self) -> None:
        await self.recognizer.close()
        self.vad_executor.shutdown(wait=False, cancel_futures=True)
