"""The session's microphone reader: a track that stops sending in the middle of a sentence (the
page's talk(false), a lost network) still ends the user's turn, and frames that are only late
do not cut it (real Silero VAD on espeak-ng speech, the real Listener and Conversation)."""

from __future__ import annotations

import asyncio
import fractions
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from streamer.audio import decode_file, to_int16
from streamer.config import Settings
from streamer.core.clock import FakeClock
from streamer.core.conversation import Conversation
from streamer.core.events import Event
from streamer.metrics import Metrics
from streamer.voice.asr import NoRecognizer
from streamer.voice.services import VoiceServices
from streamer.webrtc.mic import Microphone
from tests.fakes import FakePool, tiny_template

RATE = 48000
FRAME = 960


@pytest.fixture(scope="module")
def half_a_sentence(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """A second of silence, then the first 60 % of a spoken sentence (48 kHz int16)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("mic") / "sentence.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), "Tell me about the weather tomorrow"], check=True)
    voice = to_int16(decode_file(Path(path), RATE))
    return np.concatenate([np.zeros(RATE, np.int16), voice[: len(voice) * 6 // 10]])


class StoppingTrack:
    """Like aiortc's remote track: frames land in a queue as they arrive and `recv` takes them.
    Here `samples` in 20 ms frames, at once except for a wait of `stall_s` before frame
    `stall_at` (late packets); then nothing, without ending (a removed track)."""

    def __init__(self, samples: np.ndarray, stall_at: int, stall_s: float) -> None:
        self._frames = [samples[i : i + FRAME] for i in range(0, len(samples) - FRAME + 1, FRAME)]
        self._queue: asyncio.Queue[av.AudioFrame] = asyncio.Queue()
        self._arriving = asyncio.get_running_loop().create_task(self._arrive(stall_at, stall_s))

    async def _arrive(self, stall_at: int, stall_s: float) -> None:
        for k, samples in enumerate(self._frames):
            if k == stall_at:
                await asyncio.sleep(stall_s)
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, k * FRAME, fractions.Fraction(1, RATE)
            self._queue.put_nowait(frame)

    async def recv(self) -> av.AudioFrame:
        return await self._queue.get()


class HeardTurns(NoRecognizer):
    """Finds no words; keeps the length of each turn's audio."""

    def __init__(self) -> None:
        self.lengths: list[int] = []

    async def transcribe(self, audio: np.ndarray) -> str:
        self.lengths.append(len(audio))
        return ""


async def test_late_frames_mid_word_then_a_stopped_microphone_make_one_whole_turn(half_a_sentence):
    settings = Settings()
    clock = FakeClock()
    events: list[Event] = []
    recognised = asyncio.Event()

    def emit(event: Event) -> None:
        events.append(event)
        if event.type == "transcript":
            recognised.set()

    core = Conversation("s1", tiny_template(), FakePool(clock), settings, clock, Metrics(), emit)
    recognizer = HeardTurns()
    voice = VoiceServices(settings, recognizer)
    microphone = Microphone(core, voice, emit, lambda: None)
    frames = len(half_a_sentence) // FRAME
    microphone.attach(StoppingTrack(half_a_sentence, stall_at=50 + (frames - 50) // 2, stall_s=0.4))
    try:
        await asyncio.wait_for(recognised.wait(), 10)
        assert [e.type for e in events] == ["user_speech_started", "user_speech_ended", "transcript"]
        # one turn, all of the speech, no silence made up for the late frames: what was sent
        # after the first second's start (before the preroll), and the pause that ended it
        sent = frames * FRAME // 3
        (length,) = recognizer.lengths
        assert (sent - 16000) + 0.6 * 16000 <= length <= (sent - 0.6 * 16000) + 0.64 * 16000
    finally:
        await microphone.close()
        await voice.close()
        await core.close()


class ReadyTrack:
    """A frame of silence always waiting, as from a viewer sending steadily."""

    async def recv(self) -> av.AudioFrame:
        await asyncio.sleep(0)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, FRAME), np.int16), format="s16", layout="mono")
        frame.sample_rate = RATE
        return frame


async def test_closing_while_frames_arrive_always_ends_the_reader():
    """A cancel that lands as a frame is handed over is not lost (`asyncio.wait_for` in 3.11 can
    drop it: the session's close then waited forever)."""
    settings = Settings()
    clock = FakeClock()
    core = Conversation("s1", tiny_template(), FakePool(clock), settings, clock, Metrics(), lambda e: None)
    voice = VoiceServices(settings, NoRecognizer())
    try:
        for steps in range(60):
            microphone = Microphone(core, voice, lambda e: None, lambda: None)
            microphone.attach(ReadyTrack())
            for _ in range(steps):
                await asyncio.sleep(0)
            await asyncio.wait_for(microphone.close(), 5)
    finally:
        await voice.close()
        await core.close()
