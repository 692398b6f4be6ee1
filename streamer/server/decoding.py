"""Uploads are decoded in child processes, one upload per process at a time.

A hostile container that crashes FFmpeg takes down the one process decoding it, never the
server and never another upload: a job whose process dies is tried once more on a fresh
process (a decoder killed from outside, as the OOM killer would, costs no upload), and fails
with `DecoderCrashed` only when it crashes that one too. A decode that runs past its time
limit has its process killed. Replies come back as JSON and raw array bytes, never pickled:
a process that FFmpeg's bugs may have taken over cannot run code in the server.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from streamer import audio
from streamer.errors import BadInput, StreamerError, error_class
from streamer.lifeline import exit_with_parent
from streamer.memory import tune_malloc

log = logging.getLogger(__name__)
DTYPES = ("float32", "int16")
"""The array types a reply may carry."""
STOP_S = 2.0
START_S = 60.0
"""How long a new decoder process may take to import what it needs (a loaded machine)."""
READY = b"ready"


class DecoderCrashed(BadInput):
    """The decoder died on this upload twice (a fresh process included)."""


class DecodeTimeout(BadInput):
    """The upload took longer than `decode_timeout_s` to decode; its process was killed."""


def _encode_call(fn: Callable[..., Any], args: tuple[Any, ...]) -> list[bytes]:
    """A call as frames: a JSON header naming the function, then one frame per bytes argument."""
    blobs: list[bytes] = []
    slots: list[Any] = []
    for a in args:
        if isinstance(a, bytes):
            slots.append({"blob": len(blobs)})
            blobs.append(a)
        else:
            slots.append(a)
    header = {"module": fn.__module__, "name": fn.__qualname__, "args": slots, "blobs": len(blobs)}
    return [json.dumps(header).encode(), *blobs]


def _reply(result: Any) -> list[bytes]:
    """A function's result (arrays, a tuple of arrays, or a JSON value) as frames."""
    items = result if isinstance(result, tuple) else (result,)
    if all(isinstance(a, np.ndarray) and a.dtype.name in DTYPES for a in items):
        arrays = [np.ascontiguousarray(a) for a in items]
        shapes = [{"dtype": a.dtype.name, "shape": list(a.shape)} for a in arrays]
        header = {"arrays": shapes, "tuple": isinstance(result, tuple)}
        return [json.dumps(header).encode(), *(a.tobytes() for a in arrays)]
    return [json.dumps({"value": result}).encode()]


def _serve(conn: Connection, parent: int) -> None:
    """A decoder process: calls in, replies out, until the pipe closes."""
    tune_malloc()
    exit_with_parent(parent)
    conn.send_bytes(READY)  # imports done: a job's time limit starts from here
    while True:
        try:
            header = json.loads(conn.recv_bytes())
            blobs = [conn.recv_bytes() for _ in range(header["blobs"])]
        except (EOFError, OSError):
            return
        args = [blobs[a["blob"]] if isinstance(a, dict) else a for a in header["args"]]
        try:
            fn = getattr(importlib.import_module(header["module"]), header["name"])
            frames = _reply(fn(*args))
        except StreamerError as exc:
            frames = [json.dumps({"error": type(exc).__name__, "message": str(exc)}).encode()]
        except Exception:
            logging.getLogger(__name__).exception("audio decoder failed")
            frames = [json.dumps({"error": "StreamerError", "message": "the audio decoder failed"}).encode()]
        for frame in frames:
            conn.send_bytes(frame)


def _result(frames: list[bytes]) -> Any:
    header = json.loads(frames[0])
    if "error" in header:
        raise error_class(header["error"])(header["message"])
    if "value" in header:
        return header["value"]
    arrays = []
    for spec, blob in zip(header["arrays"], frames[1:], strict=True):
        if spec["dtype"] not in DTYPES:
            raise StreamerError("the audio decoder sent an array of an unknown type")
        arrays.append(np.frombuffer(blob, dtype=spec["dtype"]).reshape(spec["shape"]))
    return tuple(arrays) if header["tuple"] else arrays[0]


class _Died(Exception):
    pass


class _Late(Exception):
    pass


class _Process:
    """One spawned decoder process and the parent's end of its pipe."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, os.getpid()), name="audio-decoder", daemon=True)
        self.process.start()
        child.close()
        self.ready = False

    def call(self, request: list[bytes], timeout_s: float) -> list[bytes]:
        """The reply's frames (blocking); `_Died` when the process dies, `_Late` past `timeout_s`."""
        try:
            if not self.ready:
                if not self.conn.poll(START_S) or self.conn.recv_bytes() != READY:
                    raise _Died
                self.ready = True
            for frame in request:
                self.conn.send_bytes(frame)
            if not self.conn.poll(timeout_s):
                raise _Late
            first = self.conn.recv_bytes()
            header = json.loads(first)
            count = len(header.get("arrays", ()))
            return [first, *(self.conn.recv_bytes() for _ in range(count))]
        except (EOFError, OSError):
            raise _Died from None

    def stop(self) -> None:
        """Close the pipe (the process exits), kill it when it does not, reap it."""
        self.conn.close()
        self.process.join(STOP_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(STOP_S)


class Decoders:
    """`processes` decoder processes, started on first use; at most that many decodes at once."""

    def __init__(
        self,
        processes: int = 2,
        timeout_s: float = 30.0,
        speech_fn: Callable[..., tuple[np.ndarray, np.ndarray]] = audio.decode_speech,
    ) -> None:
        self._processes = processes
        self._timeout_s = timeout_s
        self._speech_fn = speech_fn
        self._idle: list[_Process] = []
        self._threads = ThreadPoolExecutor(processes, thread_name_prefix="audio-decoder")
        self._slots: asyncio.Semaphore | None = None
        self.crashes = 0
        """Uploads failed because the decoder died on them (twice)."""
        self.replaced = 0
        """Decoder processes found dead between jobs, or dead under a job that then succeeded."""

    def pids(self) -> list[int]:
        """The idle decoder processes' ids (what an OOM killer would pick from)."""
        return [p.process.pid for p in self._idle if p.process.pid is not None]

    async def speech(self, data: bytes, content_type: str | None, max_seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """(48 kHz, 16 kHz) float32 mono of an upload; errors as the decoder raised them."""
        result: tuple[np.ndarray, np.ndarray] = await self.run(self._speech_fn, data, content_type, max_seconds)
        return result

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in a decoder process: bytes and JSON values in, arrays or JSON out."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._processes)
        request = _encode_call(fn, args)
        loop = asyncio.get_running_loop()
        async with self._slots:
            for attempt in (1, 2):
                process = await loop.run_in_executor(self._threads, self._take)
                try:
                    frames = await loop.run_in_executor(self._threads, process.call, request, self._timeout_s)
                except _Late:
                    await loop.run_in_executor(self._threads, process.stop)
                    log.warning("an audio decode ran past %g s; its process was killed", self._timeout_s)
                    raise DecodeTimeout(f"the audio took longer than {self._timeout_s:g} s to decode") from None
                except _Died:
                    await loop.run_in_executor(self._threads, process.stop)
                    if attempt == 1:
                        log.warning("an audio decoder died under a job; trying it once more on a fresh one")
                        continue
                    self.crashes += 1
                    log.error("an upload crashed two audio decoders (%s)", getattr(fn, "__name__", fn))
                    raise DecoderCrashed("the audio could not be decoded (the decoder crashed on it)") from None
                if attempt == 2:
                    self.replaced += 1
                self._idle.append(process)
                return _result(frames)
        raise AssertionError("unreachable")

    def _take(self) -> _Process:
        """An idle live process (dead ones are dropped: they cost no upload), or a new one."""
        while self._idle:
            process = self._idle.pop()
            if process.process.is_alive():
                return process
            self.replaced += 1
            log.warning("an idle audio decoder died (exit %s); starting another", process.process.exitcode)
            process.stop()
        return _Process()

    async def warm(self) -> None:
        """Start the processes now, so the first uploads do not wait for their imports."""
        silence = bytes(2 * 1600)
        await asyncio.gather(*(self.speech(silence, "audio/pcm;rate=16000", 1.0) for _ in range(self._processes)))

    def close(self) -> None:
        """Stop the processes and wait for them (blocking: run it off the event loop)."""
        idle, self._idle = self._idle, []
        for process in idle:
            process.stop()
        self._threads.shutdown(wait=False, cancel_futures=True)
