"""Speech recognition, pluggable (`asr`): `pocketsphinx` (embedded, US English), `openai`
(an OpenAI-compatible `/audio/transcriptions` server: faster-whisper, vLLM, SenseVoice, …) or
`none`. One recognizer per server, bounded to `asr_workers` recognitions at once.

pocketsphinx holds the GIL while it decodes, so it runs in worker processes: raw bytes on a
pipe each way (16 kHz s16le in, UTF-8 text out), no pickle. A turn is recognised while it is
spoken (a stream holds a worker from the turn's start), so its words are ready soon after its
end; when every worker is taken, a turn takes one freed while it is spoken (and its audio so far),
else it is recognised whole once it ends.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Protocol

import numpy as np

from streamer.config import Settings

log = logging.getLogger(__name__)

NICENESS = 10
"""Recognition workers yield the CPU to the web process (its video) when both want it."""


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


def _sphinx_main(conn: Connection) -> None:
    """A recognition worker, at a low priority (video encoding comes first). Messages: `A` +
    audio (decode it), `P` (answer the words so far), `E` + audio (decode it, end the utterance,
    answer its words)."""
    os.nice(NICENESS)
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000, logfn="/dev/null")
    conn.send_bytes(b"ready")
    started = False
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        kind, pcm = message[:1], message[1:]
        if kind in (b"A", b"E") and not started:
            decoder.start_utt()
            started = True
        if pcm:
            decoder.process_raw(pcm, False, False)
        if kind == b"E" and started:
            decoder.end_utt()
            started = False
        if kind in (b"P", b"E"):
            hyp = decoder.hyp() if kind == b"E" or started else None
            conn.send_bytes((hyp.hypstr if hyp is not None else "").encode())


class _SphinxWorker:
    def __init__(self, index: int) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_sphinx_main, args=(child,), name=f"asr-{index}", daemon=True)
        self._process.start()
        child.close()
        self._ready = False
        self.dead = False
        self.io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"asr{index}-io")
        """One thread: messages to this worker keep their order and never block the event loop."""

    def send(self, message: bytes) -> None:
        if not self._ready:
            self._conn.recv_bytes()  # b"ready"
            self._ready = True
        self._conn.send_bytes(message)

    def ask(self, message: bytes) -> str:
        self.send(message)
        return self._conn.recv_bytes().decode().strip()

    def stop(self) -> None:
        self._conn.close()
        self._process.join(timeout=2)
        if self._process.is_alive():
            self._process.kill()
        self.io.shutdown(wait=False)


class SphinxStream:
    def __init__(self, owner: SphinxRecognizer, worker: _SphinxWorker) -> None:
        self._owner = owner
        self._worker = worker
        self._loop = asyncio.get_running_loop()

    def feed(self, audio: np.ndarray) -> None:
        self._loop.run_in_executor(self._worker.io, self._worker.send, b"A" + audio.astype(np.int16).tobytes())

    async def partial(self) -> str:
        return await self._owner.ask(self._worker, b"P")

    async def finish(self) -> str:
        try:
            return await self._owner.ask(self._worker, b"E")
        finally:
            self._owner.release(self._worker)


class SphinxRecognizer:
    name = "pocketsphinx"

    def __init__(self, workers: int) -> None:
        self._size = workers
        self._idle: asyncio.Queue[_SphinxWorker] | None = None
        self._workers: list[_SphinxWorker] = []
        self._waiting = 0
        """Turns waiting in `transcribe` for a worker: they go first."""

    def warm(self) -> None:
        if self._idle is None:
            self._idle = asyncio.Queue()
            for i in range(self._size):
                self.release(self._start(i))
            log.info("asr: %d pocketsphinx workers started", self._size)

    def _start(self, index: int) -> _SphinxWorker:
        worker = _SphinxWorker(index)
        self._workers.append(worker)
        return worker

    def release(self, worker: _SphinxWorker) -> None:
        assert self._idle is not None
        if not worker.dead:
            self._idle.put_nowait(worker)

    async def ask(self, worker: _SphinxWorker, message: bytes) -> str:
        """`message`'s answer; a dead worker is replaced (and its turn has no words)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(worker.io, worker.ask, message)
        except (EOFError, OSError) as exc:
            if not worker.dead:
                log.error("asr: a pocketsphinx worker died (%s); starting another", exc)
                worker.dead = True
                self._workers.remove(worker)
                worker.stop()
                self.release(self._start(len(self._workers)))
            return ""

    def try_stream(self) -> SphinxStream | None:
        """A worker for a turn still being spoken, if one is idle beyond those that turns waiting
        in `transcribe` are owed (a freed worker stays in the queue until its waiter runs: taking
        it would cut in)."""
        self.warm()
        assert self._idle is not None
        if self._idle.qsize() <= self._waiting:
            return None
        return SphinxStream(self, self._idle.get_nowait())

    async def transcribe(self, audio: np.ndarray) -> str:
        self.warm()
        assert self._idle is not None
        self._waiting += 1
        try:
            worker = await self._idle.get()
        finally:
            self._waiting -= 1
        try:
            return await self.ask(worker, b"E" + audio.astype(np.int16).tobytes())
        finally:
            self.release(worker)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, w.stop) for w in self._workers))
        self._workers.clear()


def make_recognizer(settings: Settings) -> Recognizer:
    if settings.asr == "none":
        return NoRecognizer()
    if settings.asr == "openai":
        from streamer.voice.openai_asr import OpenAIRecognizer

        return OpenAIRecognizer(settings.asr_url, settings.asr_model, settings.asr_language, settings.asr_workers)
    return SphinxRecognizer(settings.asr_workers)
