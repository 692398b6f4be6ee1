"""pocketsphinx, the embedded recognizer (US English), in worker processes.

pocketsphinx holds the GIL while it decodes, so it runs in `asr_workers` processes at a low
priority; each holds `asr_streams_per_worker` decoders (slots), so more turns are recognised
while they are spoken than there are processes, and the processes bound the CPU recognition
takes. A turn holds a slot from its start, so its words are ready soon after its end; when
every slot is taken, a turn is recognised whole once it ends. Raw bytes on a pipe each way
(16 kHz s16le in, UTF-8 text out), no pickle.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

log = logging.getLogger(__name__)

NICENESS = 10
"""Recognition workers yield the CPU to the web process (its video) when both want it."""


def _sphinx_main(conn: Connection, slots: int) -> None:
    """A recognition worker. Messages: a kind byte, a slot byte, then audio: `A` (decode it),
    `P` (answer the slot's words so far), `E` (decode it, end the slot's utterance, answer its
    words)."""
    os.nice(NICENESS)
    from pocketsphinx import Decoder

    decoders = [Decoder(samprate=16000, logfn="/dev/null") for _ in range(slots)]
    started = [False] * slots
    conn.send_bytes(b"ready")
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        kind, slot, pcm = message[:1], message[1], message[2:]
        decoder = decoders[slot]
        if kind in (b"A", b"E") and not started[slot]:
            decoder.start_utt()
            started[slot] = True
        if pcm:
            decoder.process_raw(pcm, False, False)
        if kind == b"E" and started[slot]:
            decoder.end_utt()
            started[slot] = False
        if kind in (b"P", b"E"):
            hyp = decoder.hyp() if kind == b"E" or started[slot] else None
            conn.send_bytes((hyp.hypstr if hyp is not None else "").encode())


class _SphinxWorker:
    def __init__(self, index: int, slots: int) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_sphinx_main, args=(child, slots), name=f"asr-{index}", daemon=True)
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


@dataclass(frozen=True)
class _Slot:
    worker: _SphinxWorker
    index: int

    def message(self, kind: bytes, audio: np.ndarray | None = None) -> bytes:
        pcm = b"" if audio is None else audio.astype(np.int16).tobytes()
        return kind + bytes([self.index]) + pcm


class SphinxStream:
    def __init__(self, owner: SphinxRecognizer, slot: _Slot) -> None:
        self._owner = owner
        self._slot = slot
        self._loop = asyncio.get_running_loop()

    def feed(self, audio: np.ndarray) -> None:
        worker = self._slot.worker
        if not worker.dead:
            self._loop.run_in_executor(worker.io, worker.send, self._slot.message(b"A", audio))

    async def partial(self) -> str:
        return await self._owner.ask(self._slot, b"P")

    async def finish(self) -> str:
        try:
            return await self._owner.ask(self._slot, b"E")
        finally:
            self._owner.release(self._slot)


class SphinxRecognizer:
    name = "pocketsphinx"

    def __init__(self, workers: int, streams_per_worker: int = 1) -> None:
        self._size = workers
        self._slots_each = streams_per_worker
        self._idle: asyncio.Queue[_Slot] | None = None
        self._workers: list[_SphinxWorker] = []

    def warm(self) -> None:
        if self._idle is None:
            self._idle = asyncio.Queue()
            for _ in range(self._size):
                self._start()
            log.info("asr: %d pocketsphinx workers started, %d streams each", self._size, self._slots_each)

    def _start(self) -> None:
        worker = _SphinxWorker(len(self._workers), self._slots_each)
        self._workers.append(worker)
        for index in range(self._slots_each):
            self.release(_Slot(worker, index))

    def release(self, slot: _Slot) -> None:
        assert self._idle is not None
        if not slot.worker.dead:
            self._idle.put_nowait(slot)

    async def ask(self, slot: _Slot, kind: bytes, audio: np.ndarray | None = None) -> str:
        """The answer to a message on `slot`; a dead worker is replaced (its turns have no words)."""
        worker = slot.worker
        try:
            return await asyncio.get_running_loop().run_in_executor(worker.io, worker.ask, slot.message(kind, audio))
        except (EOFError, OSError) as exc:
            if not worker.dead:
                log.error("asr: a pocketsphinx worker died (%s); starting another", exc)
                worker.dead = True
                self._workers.remove(worker)
                worker.stop()
                self._start()
            return ""

    def try_stream(self) -> SphinxStream | None:
        self.warm()
        assert self._idle is not None
        while not self._idle.empty():
            slot = self._idle.get_nowait()
            if not slot.worker.dead:  # a dead worker's slots leave the queue as they come up
                return SphinxStream(self, slot)
        return None

    async def transcribe(self, audio: np.ndarray) -> str:
        self.warm()
        assert self._idle is not None
        slot = await self._idle.get()
        while slot.worker.dead:
            slot = await self._idle.get()
        try:
            return await self.ask(slot, b"E", audio)
        finally:
            self.release(slot)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, w.stop) for w in self._workers))
        self._workers.clear()
