"""The listener's recognition streams: a turn that began while every stream was taken takes
one that frees before it ends, with its audio so far (real Listener and Conversation; a fake
VAD that hears non-zero frames, a recognizer with a given number of streams)."""

from __future__ import annotations

import asyncio

import numpy as np

from streamer.config import Settings
from streamer.core.clock import FakeClock
from streamer.core.conversation import Conversation
from streamer.metrics import Metrics
from streamer.voice.listener import Listener
from streamer.voice.services import VoiceServices
from tests.fakes import FakePool, tiny_template

FRAME = 512


class LoudVad:
    frame_samples = FRAME

    def __call__(self, frame: np.ndarray) -> float:
        return 0.9 if np.any(frame) else 0.0


class Stream:
    def __init__(self, owner: Streams) -> None:
        self.owner = owner
        self.fed: list[np.ndarray] = []

    def feed(self, audio: np.ndarray) -> None:
        self.fed.append(audio)

    async def partial(self) -> str:
        return ""

    async def finish(self) -> str:
        self.owner.free += 1
        return f"{len(np.concatenate(self.fed))} samples"


class Streams:
    """A recognizer with `free` streams; a turn recognised whole says so."""

    name = "streams"

    def __init__(self, free: int) -> None:
        self.free = free
        self.streams: list[Stream] = []

    def try_stream(self) -> Stream | None:
        if self.free == 0:
            return None
        self.free -= 1
        self.streams.append(Stream(self))
        return self.streams[-1]

    async def transcribe(self, audio: np.ndarray) -> str:
        return "whole"

    def warm(self) -> None:
        pass

    async def close(self) -> None:
        pass


def listener(recognizer: Streams) -> tuple[Listener, list]:
    clock = FakeClock()
    events: list = []
    settings = Settings()
    core = Conversation("s1", tiny_template(), FakePool(clock), settings, clock, Metrics(), events.append)
    return Listener(core, VoiceServices(settings, recognizer), events.append, clock=clock.now, vad=LoudVad()), events


async def recognised(ears: Listener) -> None:
    """Let the ended turn's recognition task run, then close."""
    for _ in range(5):
        await asyncio.sleep(0)
    await ears.close()


def frames(voiced: bool, count: int) -> np.ndarray:
    return np.full(FRAME * count, 1000 if voiced else 0, np.int16)


async def test_a_turn_takes_a_stream_freed_while_it_is_spoken_with_its_audio_so_far():
    recognizer = Streams(free=0)
    ears, events = listener(recognizer)
    await ears.feed(frames(False, 10))
    await ears.feed(frames(True, 12))  # the turn starts: no stream free
    assert ears.turns.state == "speaking" and recognizer.streams == []
    recognizer.free = 1  # another session's turn ended
    await ears.feed(frames(True, 8))
    (stream,) = recognizer.streams
    assert len(np.concatenate(stream.fed)) == len(ears.turns.audio_so_far())  # the preroll and all 20 so far
    await ears.feed(frames(False, 20))  # the pause ends the turn
    await recognised(ears)
    (transcript,) = [e for e in events if e.type == "transcript"]
    assert transcript.text == f"{FRAME * (10 + 20 + 19)} samples"  # preroll, speech, the pause that ended it
    assert recognizer.free == 1


async def test_a_turn_no_stream_frees_for_is_recognised_whole_at_its_end():
    recognizer = Streams(free=0)
    ears, events = listener(recognizer)
    await ears.feed(frames(True, 20))
    await ears.feed(frames(False, 20))
    await recognised(ears)
    assert [e.text for e in events if e.type == "transcript"] == ["whole"] and recognizer.streams == []
