"""Text to speech through a local engine (piper or espeak-ng), run as a subprocess.

The text always goes in on stdin, never on the command line, so it cannot be read as an
option. Synchronous: the server calls `synthesize` in an executor.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from streamer.errors import BadInput, NotReady, StreamerError
from streamer.settings_slices import ReplySettings

log = logging.getLogger(__name__)

MAX_CHARS = 1000
TIMEOUT_S = 60.0
_VOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+\-/]*$")


def backend(settings: ReplySettings) -> str | None:
    """The engine `synthesize` would use: "piper", "espeak" or None."""
    if settings.tts in ("auto", "piper") and settings.piper_voice and shutil.which("piper"):
        return "piper"
    if settings.tts in ("auto", "espeak") and shutil.which("espeak-ng"):
        return "espeak"
    return None


def synthesize(text: str, settings: ReplySettings) -> bytes:
    """Speak `text`; returns a WAV file's bytes."""
    text = text.strip()
    if not text:
        raise BadInput("empty text")
    if len(text) > MAX_CHARS:
        raise BadInput(f"text of {len(text)} characters; the limit is {MAX_CHARS}")
    engine = backend(settings)
    if engine is None:
        raise NotReady("no TTS backend: install espeak-ng or set piper_voice")
    with tempfile.TemporaryDirectory(prefix="tts-") as tmp:
        out = Path(tmp) / "speech.wav"
        if engine == "piper":
            command = ["piper", "--model", str(settings.piper_voice), "--output_file", str(out)]
        else:
            if not _VOICE.match(settings.tts_voice):
                raise BadInput(f"invalid espeak-ng voice {settings.tts_voice!r}")
            command = ["espeak-ng", "--stdin", "-v", settings.tts_voice, "-w", str(out)]
        _run(command, text)
        wav = out.read_bytes() if out.exists() else b""
    if not wav:
        raise StreamerError(f"{engine} produced no audio")
    log.info("tts: %s spoke %d characters (%d bytes)", engine, len(text), len(wav))
    return wav


def _run(command: list[str], text: str) -> None:
    try:
        done = subprocess.run(command, input=text.encode(), capture_output=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise StreamerError(f"{command[0]} took longer than {TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise NotReady(f"cannot run {command[0]}: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip()[-300:]
        raise StreamerError(f"{command[0]} failed ({done.returncode}): {detail}")
