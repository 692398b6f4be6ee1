import shutil
from pathlib import Path

import numpy as np
import pytest

from streamer.audio import decode
from streamer.config import Settings
from streamer.errors import BadInput, NotReady
from streamer.tts import backend, synthesize

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@needs_espeak
def test_espeak_speaks_plausible_audio():
    settings = Settings(tts="espeak")
    assert backend(settings) == "espeak"
    short = decode(synthesize("Hello.", settings), "audio/wav", 16_000, 60)
    text = "Hello there. This sentence is a good deal longer than the first one was."
    long = decode(synthesize(text, settings), "audio/wav", 16_000, 60)
    # about 2-3 words a second, and not silence
    assert 0.3 < len(short) / 16_000 < 2.0
    assert 3.0 < len(long) / 16_000 < 8.0
    assert np.sqrt(np.mean(long**2)) > 0.02


@needs_espeak
def test_text_goes_on_stdin_not_as_options(tmp_path):
    # text that looks like options is spoken, not obeyed (-w would write a file)
    target = tmp_path / "owned.wav"
    wav = synthesize(f"-w {target} --help", Settings(tts="espeak"))
    assert wav[:4] == b"RIFF"
    assert not target.exists()


@needs_espeak
def test_auto_prefers_espeak_without_a_piper_voice():
    assert backend(Settings(tts="auto")) == "espeak"
    # a piper voice without the piper executable falls back (piper is not installed here)
    if shutil.which("piper") is None:
        assert backend(Settings(tts="auto", piper_voice=Path("/nonexistent.onnx"))) == "espeak"


@pytest.mark.parametrize("text", ["", "   \n", "x" * 1001])
def test_bad_text(text):
    with pytest.raises(BadInput):
        synthesize(text, Settings(tts="espeak"))


def test_no_backend(monkeypatch, tmp_path):
    assert backend(Settings(tts="none")) is None
    with pytest.raises(NotReady, match="no TTS backend"):
        synthesize("hello", Settings(tts="none"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no engine on PATH
    assert backend(Settings(tts="auto")) is None
    with pytest.raises(NotReady, match="install espeak-ng"):
        synthesize("hello", Settings(tts="auto"))


@needs_espeak
def test_voice_setting_is_checked():
    with pytest.raises(BadInput, match="voice"):
        synthesize("hello", Settings(tts="espeak", tts_voice="--stdout"))
