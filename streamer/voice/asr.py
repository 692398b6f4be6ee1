"""Speech recognition, pluggable (`asr`): `pocketsphinx` (embedded, US English), `openai`
(an OpenAI-compatible `/audio/transcriptions` server: faster-whisper, vLLM, SenseVoice, …) or
`none`. One recognizer per server, bounded to `asr_workers` recognitions at once.

pocketsphinx holds the GIL while it decodes, so it runs in worker processes: raw bytes on a
pipe each way (16 kHz s16le in, UTF-8 text out), no pickle.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Protocol

import numpy as np

from streamer.config import Settings

log = logging.getLogger(__name__)


class Recognizer(Protocol):
    name: str

    async def transcribe(self, audio: np.ndarray) -> str:
        """The words in `audio` (int16, 16 kHz mono); empty when there are none."""
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

    def warm(self) -> None:
        pass

    async def close(self) -> None:
        pass


def _sphinx_main(conn: Connection) -> None:
    """A recognition worker: bytes in, text out, until the pipe closes."""
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000, logfn="/dev/null")
    conn.send_bytes(b"ready")
    while True:
        try:
            pcm = conn.recv_bytes()
        except (EOFError, OSError):
            return
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        conn.send_bytes((hyp.hypstr if hyp is not None else "").encode())


class _SphinxWorker:
    def __init__(self, index: int) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_sphinx_main, args=(child,), name=f"asr-{index}", daemon=True)
        self._process.start()
        child.close()
        self._ready = False

    def recognize(self, pcm: bytes) -> str:
        """Blocking: runs on the worker's own I/O thread."""
        if not self._ready:
            self._conn.recv_bytes()  # b"ready"
            self._ready = True
        self._conn.send_bytes(pcm)
        return self._conn.recv_bytes().decode()

    def alive(self) -> bool:
        return self._process.is_alive()

    def stop(self) -> None:
        self._conn.close()
        self._process.join(timeout=2)
        if self._process.is_alive():
            self._process.kill()


class SphinxRecognizer:
    name = "pocketsphinx"

    def __init__(self, workers: int) -> None:
        self._size = workers
        self._idle: asyncio.Queue[_SphinxWorker] | None = None
        self._workers: list[_SphinxWorker] = []
        self._io = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asr-io")

    def warm(self) -> None:
        if self._idle is None:
            self._idle = asyncio.Queue()
            for i in range(self._size):
                worker = _SphinxWorker(i)
                self._workers.append(worker)
                self._idle.put_nowait(worker)
            log.info("asr: %d pocketsphinx workers started", self._size)

    async def transcribe(self, audio: np.ndarray) -> str:
        self.warm()
        assert self._idle is not None
        worker = await self._idle.get()
        try:
            pcm = audio.astype(np.int16).tobytes()
            text = await asyncio.get_running_loop().run_in_executor(self._io, worker.recognize, pcm)
        except (EOFError, OSError) as exc:
            log.error("asr: a pocketsphinx worker died (%s); starting another", exc)
            worker.stop()
            self._workers.remove(worker)
            worker = _SphinxWorker(len(self._workers))
            self._workers.append(worker)
            return ""
        finally:
            self._idle.put_nowait(worker)
        return text.strip()

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, w.stop) for w in self._workers))
        self._workers.clear()
        self._io.shutdown(wait=False)


def make_recognizer(settings: Settings) -> Recognizer:
    if settings.asr == "none":
        return NoRecognizer()
    if settings.asr == "openai":
        from streamer.voice.openai_asr import OpenAIRecognizer

        return OpenAIRecognizer(settings.asr_url, settings.asr_model, settings.asr_language, settings.asr_workers)
    return SphinxRecognizer(settings.asr_workers)
