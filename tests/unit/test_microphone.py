"""The session's microphone reader: a track that stops sending in the middle of a sentence (the
page's talk(false), a lost network) still ends the user's turn (real Silero VAD on espeak-ng
speech, the real Listener and Conversation)."""

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
    """Half a second of silence, then the first 60 % of a spoken sentence (48 kHz int16)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("mic") / "sentence.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), "Tell me about the weather tomorrow"], check=True)
    voice = to_int16(decode_file(Path(path), RATE))
    return np.concatenate([np.zeros(RATE // 2, np.int16), voice[: len(voice) * 6 // 10]])


class StoppingTrack:
    """Sends `samples` in 20 ms frames, then nothing, without ending (a removed track)."""

    def __init__(self, samples: np.ndarray) -> None:
        self._frames = [samples[i : i + FRAME] for i in range(0, len(samples) - FRAME + 1, FRAME)]
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if not self._frames:
            await asyncio.Event().wait()
        frame = av.AudioFrame.from_ndarray(self._frames.pop(0).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._pts, fractions.Fraction(1, RATE)
        self._pts += FRAME
        return frame


async def test_a_microphone_that_stops_mid_sentence_still_ends_the_turn(half_a_sentence):
    settings = Settings()
    clock = FakeClock()
    events: list[Event] = []
    ended = asyncio.Event()

    def emit(event: Event) -> None:
        events.append(event)
        if event.type == "user_speech_ended":
            ended.set()

    core = Conversation("s1", tiny_template(), FakePool(clock), settings, clock, Metrics(), emit)
    voice = VoiceServices(settings, NoRecognizer())
    microphone = Microphone(core, voice, emit, lambda: None)
    microphone.attach(StoppingTrack(half_a_sentence))
    try:
        await asyncio.wait_for(ended.wait(), 10)
        assert [e.type for e in events][:2] == ["user_speech_started", "user_speech_ended"]
        assert microphone.listener is not None and microphone.listener.turns.state == "quiet"
    finally:
        await microphone.close()
        await voice.close()
        await core.close()
