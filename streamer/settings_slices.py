"""The layers' slices of the settings: what the speech engine, the render worker, the reply engine
and listening use.

`Settings` (streamer/config.py) is built from these (it inherits each), so every name stays one
flat public setting (TOML key, STREAMER_* variable, CLI flag). A layer is typed against its slice;
a render worker, in another process or a Ray actor, is given only a `RenderSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamer import resources
from streamer.errors import BadInput


@dataclass(frozen=True)
class SpeechSettings:
    """What the conversation core (the speech engine of one viewer) plays speech with."""

    max_audio_seconds: float = 120.0
    max_queued_seconds: float = 300.0
    first_window_s: float = 0.2
    window_s: float = 1.0
    stream_idle_s: float = 10.0
    """A live stream that sends no audio for this long ends as if `end` had been sent."""

    def _validate_speech(self) -> None:
        if not 0.04 <= self.first_window_s <= self.window_s:
            raise BadInput("first_window_s must be between 0.04 s and window_s")


@dataclass(frozen=True)
class RenderSettings:
    """What a render worker renders with: the renderer, its devices and models, the templates."""

    templates_dir: Path = resources.TEMPLATES
    cache_dir: Path = resources.CACHE

    renderer: str = "auto"
    """`lite`, `musetalk`, or `auto` (musetalk when `models` holds its weights, else lite)."""
    models: Path | None = None
    devices: tuple[str, ...] = ()
    """Render devices, e.g. ("cuda:0", "cuda:1"); empty = every CUDA device, else one CPU worker."""

    # MuseTalk
    musetalk_version: str = "v15"
    batch_size: int = 32
    fp16: bool = True
    vae_fp16: bool = False
    compile: bool = False
    rest_in_silence: bool = True
    """MuseTalk moves the mouth even in silence; show the template's own mouth there instead."""

    # MuseTalk fidelity
    musetalk_faces: str = "auto"
    """Face landmarks for MuseTalk's crops: `auto` (DWPose from models/dwpose/, else
    face-alignment's FAN when installed), `dwpose`, `fan`, or `haar` (OpenCV boxes, framed unlike
    the training crops: the template is labelled degraded)."""
    musetalk_mask: str = "bisenet"
    """MuseTalk's blend mask: `bisenet` (face parsing from face-parse-bisent/79999_iter.pth; the
    renderer refuses to start without it) or `geometric` (a fixed jaw shape: labelled degraded)."""
    realtime_fp16: bool = False
    """On CUDA, run whisper, the VAE and the positional encoding in fp16 too (the official
    realtime script's precision); off until GPU figures say it is safe."""

    sim_fixed_ms: float = 200.0
    """`sim` device cost model: a call of n frames sleeps sim_fixed_ms + n × sim_per_frame_ms."""
    sim_per_frame_ms: float = 6.0
    batch_across_jobs: bool = True
    """A worker renders the due jobs of several sessions in one model call (False: one job a call)."""

    def _validate_render(self) -> None:
        if self.renderer not in ("auto", "lite", "musetalk", "sim"):
            raise BadInput(f"unknown renderer {self.renderer!r} (lite, musetalk, sim or auto)")
        if self.sim_fixed_ms < 0 or self.sim_per_frame_ms < 0:
            raise BadInput("sim_fixed_ms and sim_per_frame_ms cannot be negative")
        if self.renderer == "musetalk" and self.models is None:
            raise BadInput("--renderer musetalk needs --models DIR (the official weights layout)")
        if self.musetalk_faces not in ("auto", "dwpose", "fan", "haar"):
            raise BadInput(f"unknown musetalk_faces {self.musetalk_faces!r} (auto, dwpose, fan or haar)")
        if self.musetalk_mask not in ("bisenet", "geometric"):
            raise BadInput(f"unknown musetalk_mask {self.musetalk_mask!r} (bisenet or geometric)")


@dataclass(frozen=True)
class ReplySettings:
    """What the reply engine talks to: the LLM and the speech synthesis (`/say` uses it too)."""

    tts: str = "auto"
    """`espeak` (espeak-ng, embedded), `openai` (`tts_url`), `piper`, `none`, or `auto` (piper
    when a voice is set, else espeak-ng if installed). `/say` and the reply engine use it."""
    piper_voice: Path | None = None
    tts_voice: str = "en-us"
    """An espeak-ng voice (`en-us`, `cmn` for Mandarin, …) or the OpenAI voice (`alloy`, …);
    a template's sidecar `voice` overrides it for that template."""
    tts_url: str = ""
    """`tts = "openai"`: base URL ending in /v1; POST {tts_url}/audio/speech, 24 kHz s16le back."""
    tts_model: str = "tts-1"
    tts_api_key: str | None = None
    """Bearer for `tts_url`; never logged, never passed to render workers."""

    # Reply engine (conversation mode): empty llm_url = no engine, /chat answers 409
    llm_url: str = ""
    """OpenAI-compatible base URL ending in /v1 (vLLM, Ollama, llama.cpp, LM Studio, OpenAI)."""
    llm_model: str = ""
    llm_api_key: str | None = None
    """Sent as `Authorization: Bearer`; never logged, never passed to render workers."""
    llm_system_prompt: str = "You are a friendly digital human. Answer briefly, in plain spoken sentences."
    """A template sidecar's `persona` overrides it for that template."""
    llm_history_turns: int = 20
    """Exchanges (question and answer) kept per session and sent with each question."""
    llm_max_tokens: int = 512
    llm_temperature: float = 0.7
    llm_timeout_s: float = 20.0
    """Longest wait for the first token of an answer."""

    def _validate_reply(self) -> None:
        if self.tts not in ("auto", "espeak", "piper", "openai", "none"):
            raise BadInput(f"unknown tts {self.tts!r} (espeak, openai, piper, none or auto)")
        if self.tts == "openai" and not self.tts_url:
            raise BadInput('tts = "openai" needs tts_url (a base URL ending in /v1)')
        if self.llm_history_turns < 0 or self.llm_timeout_s <= 0 or self.llm_max_tokens < 1:
            raise BadInput("llm_history_turns must be >= 0, llm_timeout_s > 0 and llm_max_tokens >= 1")


@dataclass(frozen=True)
class ListeningSettings:
    """A viewer's microphone: turns, speech recognition, barge-in."""

    vad_threshold: float = 0.5
    """Speech probability (Silero VAD) above which a 32 ms frame counts as voiced."""
    turn_min_speech_ms: float = 200.0
    """Voiced time before the user counts as speaking (shorter sounds are noise)."""
    turn_end_silence_ms: float = 600.0
    """A pause this long ends the user's turn."""
    turn_max_s: float = 30.0
    asr: str = "pocketsphinx"
    """`pocketsphinx` (embedded, US English), `openai` (`POST {asr_url}/audio/transcriptions`) or `none`."""
    asr_url: str = ""
    asr_model: str = "whisper-1"
    asr_language: str = ""
    """An ISO-639-1 code sent to the `openai` engine (`zh`, `en`, …); empty: the server guesses."""
    asr_workers: int = 2
    """Recognitions at once for the whole server (worker processes), whatever the sessions."""
    barge_in_min_speech_ms: float = 300.0
    """The user's speech over an answer pauses it once it has lasted this long."""
    false_interruption_s: float = 1.5
    """A pause whose speech gives no words within this long resumes the answer where it stopped."""

    def _validate_listening(self) -> None:
        if self.asr not in ("pocketsphinx", "openai", "none"):
            raise BadInput(f"unknown asr {self.asr!r} (pocketsphinx, openai or none)")
        if self.asr == "openai" and not self.asr_url:
            raise BadInput("asr = openai needs asr_url (the base URL ending in /v1)")
        if not 0 < self.vad_threshold < 1:
            raise BadInput("vad_threshold must be in (0, 1)")
        if self.asr_workers < 1 or self.turn_max_s <= 0 or self.false_interruption_s <= 0:
            raise BadInput("asr_workers, turn_max_s and false_interruption_s must be positive")
