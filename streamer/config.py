"""Settings: one frozen dataclass, built once from defaults < TOML file < environment < CLI."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer import resources
from streamer.errors import BadInput
from streamer.ice import parse_ice_servers

ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "STREAMER_"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback_host(host: str) -> bool:
    """The one loopback rule: a bind address or a Host header's name (port stripped by the caller)."""
    return host.lower() in LOOPBACK_HOSTS


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    key: str | None = None
    """Server key; required when binding anything but loopback. Grants control of every session."""
    key_file: Path | None = None
    """A file holding the server key (first line), so that no command line shows it."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the API from a browser (an allow-list; there is no wildcard)."""

    templates_dir: Path = resources.TEMPLATES
    cache_dir: Path = resources.CACHE
    web_dir: Path = resources.WEB

    renderer: str = "auto"
    """`lite`, `musetalk`, or `auto` (musetalk when `models` holds its weights, else lite)."""
    models: Path | None = None
    devices: tuple[str, ...] = ()
    """Render devices, e.g. ("cuda:0", "cuda:1"); empty = every CUDA device, else one CPU worker."""

    max_sessions: int = 16
    max_audio_bytes: int = 20 * 1024 * 1024
    max_audio_seconds: float = 120.0
    max_queued_seconds: float = 300.0

    first_window_s: float = 0.2
    window_s: float = 1.0
    render_timeout_s: float = 30.0
    stream_idle_s: float = 10.0
    """A live stream that sends no audio for this long ends as if `end` had been sent."""

    video_codec: str = "auto"
    """`auto` (browser's choice), `h264` or `vp8`."""
    x264_preset: str = "ultrafast"
    video_bitrate: int = 1_500_000
    """Target bitrate of the ladder's top step; within a step REMB does not move it (aiortc
    rebuilds an encoder past 10 %)."""
    h264_encoder: str = "auto"
    """`auto` (NVENC when ffmpeg has it, else libx264), `libx264` or `h264_nvenc`."""

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

    # Render plane
    pool: str = "local"
    """`local` (a worker process per device) or `ray` (a render actor per device of a Ray cluster)."""
    ray_address: str = "auto"
    """The Ray cluster `pool = "ray"` joins (`auto`: the one this machine belongs to)."""
    ray_namespace: str = "streamer"
    """Ray namespace of the named render actors: fronts in the same one share them."""
    sim_fixed_ms: float = 200.0
    """`sim` device cost model: a call of n frames sleeps sim_fixed_ms + n × sim_per_frame_ms."""
    sim_per_frame_ms: float = 6.0
    admission_threshold: float = 0.8
    """Share of the measured render capacity that the admitted sessions may plan to use."""
    speaking_share: float = 1.0
    """Share of its time an open session is expected to speak (1.0: all of it)."""
    batch_across_jobs: bool = True
    """A worker renders the due jobs of several sessions in one model call (False: one job a call)."""

    # Internet-facing
    grant_secret: str | None = None
    """Signs session grants (JWT HS256); empty = derived from the server key."""
    grant_ttl_s: float = 60.0
    """A grant's default lifetime; `POST /api/grants` may ask for up to `grant_max_ttl_s`."""
    grant_max_ttl_s: float = 3600.0
    grant_store: str = "memory"
    """Where used grants are remembered: `memory` (one server) or `redis://host:port/db` (a Redis
    every server behind the load balancer shares, so a grant opens one session across them)."""
    metrics_token: str | None = None
    """A bearer token for `/metrics` only (Prometheus `bearer_token`), beside the server key."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses (or CIDR networks) of reverse proxies whose X-Forwarded-* headers are believed."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs, e.g. `stun:stun.example.org:3478`, `turn:user:pass@host:3478?transport=tcp`."""
    ice_port_min: int = 0
    ice_port_max: int = 0
    """UDP port range for media (0, 0 = any port); open it in the firewall."""
    turn_secret: str | None = None
    """coturn `static-auth-secret`: TURN URLs without user:pass get short-lived REST credentials."""
    turn_ttl_s: float = 3600.0
    max_json_bytes: int = 64 * 1024
    """JSON bodies (an SDP offer included) and WebSocket text messages."""
    max_ws_bytes: int = 64 * 1024
    """One binary WebSocket message (a PCM chunk)."""
    max_session_s: float = 4 * 3600.0
    """A session's longest life; a grant's `max_session_s` may only shorten it."""
    idle_timeout_s: float = 600.0
    """A session with no speech for this long is closed (`closing`, reason `idle`); 0 = never."""
    max_sessions_per_client: int = 4
    """Sessions one client address may hold (loopback clients are not limited)."""
    max_uploads_per_session: int = 2
    """Uploads (speak, say) one session may have decoding at once."""
    max_sockets_per_session: int = 2
    """Audio WebSockets one session may hold open at once; the next gets 429."""
    decode_timeout_s: float = 30.0
    """One upload's decode may take this long; past it its decoder process is killed (400)."""
    read_timeout_s: float = 30.0
    """A client must send a request's headers, and then its body, within this long (or 408)."""
    max_headers: int = 32
    """Header lines one request may carry (each at most 8 KiB: 256 KiB in all at most)."""
    drain_s: float = 30.0
    """On SIGTERM, how long utterances already playing may take to finish."""

    # Media plane
    prefer_cheaper_codec: bool = True
    """With `video_codec = auto`, offer H.264 (cheaper to encode, bench/encoder.py) first when the
    viewer takes both; false keeps the browser's order."""
    vp8_cpu_used: int = 16
    """libvpx realtime speed, higher is faster (aiortc's own: -6)."""
    adaptive_bitrate: bool = True
    """Move each session along a small bitrate/resolution ladder as its viewer's link allows
    (media/ladder.py); false holds `video_bitrate` and the full size whatever the link."""

    # Listening (a viewer's microphone): turns, speech recognition, barge-in
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

    def public_binding(self) -> bool:
        return not is_loopback_host(self.host)

    def validate(self) -> Settings:
        if self.public_binding() and not self.key:
            raise BadInput(
                f"binding {self.host} exposes the service: set a server key "
                "(--key, STREAMER_KEY or `key` in the config file)"
            )
        if self.renderer not in ("auto", "lite", "musetalk", "sim"):
            raise BadInput(f"unknown renderer {self.renderer!r} (lite, musetalk, sim or auto)")
        if self.pool not in ("local", "ray"):
            raise BadInput(f"unknown pool {self.pool!r} (local or ray)")
        if not 0 < self.admission_threshold <= 1 or not 0 < self.speaking_share <= 1:
            raise BadInput("admission_threshold and speaking_share must be in (0, 1]")
        if self.sim_fixed_ms < 0 or self.sim_per_frame_ms < 0:
            raise BadInput("sim_fixed_ms and sim_per_frame_ms cannot be negative")
        if self.renderer == "musetalk" and self.models is None:
            raise BadInput("--renderer musetalk needs --models DIR (the official weights layout)")
        if self.musetalk_faces not in ("auto", "dwpose", "fan", "haar"):
            raise BadInput(f"unknown musetalk_faces {self.musetalk_faces!r} (auto, dwpose, fan or haar)")
        if self.musetalk_mask not in ("bisenet", "geometric"):
            raise BadInput(f"unknown musetalk_mask {self.musetalk_mask!r} (bisenet or geometric)")
        if self.video_codec not in ("auto", "h264", "vp8"):
            raise BadInput(f"unknown video codec {self.video_codec!r} (auto, h264 or vp8)")
        if not 0.04 <= self.first_window_s <= self.window_s:
            raise BadInput("first_window_s must be between 0.04 s and window_s")
        if (self.ice_port_min, self.ice_port_max) != (0, 0) and not (
            1024 <= self.ice_port_min <= self.ice_port_max <= 65535
        ):
            raise BadInput("ice_port_min..ice_port_max must be a range within 1024..65535")
        if self.grant_store != "memory" and not self.grant_store.startswith(("redis://", "rediss://", "unix://")):
            raise BadInput(f"unknown grant_store {self.grant_store!r} (memory or redis://host:port/db)")
        if self.read_timeout_s <= 0 or self.decode_timeout_s <= 0 or self.max_sockets_per_session < 1:
            raise BadInput("read_timeout_s, decode_timeout_s and max_sockets_per_session must be positive")
        if self.tts not in ("auto", "espeak", "piper", "openai", "none"):
            raise BadInput(f"unknown tts {self.tts!r} (espeak, openai, piper, none or auto)")
        if self.tts == "openai" and not self.tts_url:
            raise BadInput('tts = "openai" needs tts_url (a base URL ending in /v1)')
        if self.llm_history_turns < 0 or self.llm_timeout_s <= 0 or self.llm_max_tokens < 1:
            raise BadInput("llm_history_turns must be >= 0, llm_timeout_s > 0 and llm_max_tokens >= 1")
        parse_ice_servers(self.ice_servers)  # a bad URL stops the start, with its reason
        self._validate_listening()
        return self

    def _validate_listening(self) -> None:
        if self.asr not in ("pocketsphinx", "openai", "none"):
            raise BadInput(f"unknown asr {self.asr!r} (pocketsphinx, openai or none)")
        if self.asr == "openai" and not self.asr_url:
            raise BadInput("asr = openai needs asr_url (the base URL ending in /v1)")
        if not 0 < self.vad_threshold < 1:
            raise BadInput("vad_threshold must be in (0, 1)")
        if self.asr_workers < 1 or self.turn_max_s <= 0 or self.false_interruption_s <= 0:
            raise BadInput("asr_workers, turn_max_s and false_interruption_s must be positive")


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, value: Any) -> Any:
    """Turn a TOML, environment or CLI value into the field's type."""
    if name not in _FIELDS:
        raise BadInput(f"unknown setting {name!r}")
    default = _FIELDS[name].default
    kind = type(default)
    if value is None:
        return None
    if name in ("models", "piper_voice", "key_file") or isinstance(default, Path):
        return Path(value).expanduser()
    if isinstance(default, tuple):
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return tuple(str(v) for v in value)
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise BadInput(f"setting {name!r} wants true or false, got {value!r}")
            return value.lower() in ("1", "true", "yes")
        return bool(value)
    if kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise BadInput(f"setting {name!r} wants a number, got {value!r}") from None
    return str(value)


def load_settings(
    config_file: Path | None = None,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults < TOML file < STREAMER_* environment < command line (None values are unset)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BadInput(f"cannot read config file {config_file}: {exc}") from None
        values.update({k: _coerce(k, v) for k, v in data.items()})
    env = os.environ if environ is None else environ
    for name in _FIELDS:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(name, raw)
    for name, value in (cli or {}).items():
        if value is not None:
            values[name] = _coerce(name, value)
    if values.get("key_file") is not None and not values.get("key"):
        values["key"] = read_key_file(values["key_file"])
    return Settings(**values).validate()


def read_key_file(path: Path) -> str:
    """The server key from the first line of `path`."""
    try:
        key = Path(path).read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read key_file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not key or not key[0].strip():
        raise BadInput(f"key_file {path} is empty")
    return key[0].strip()


SECRET_SUFFIXES = ("_api_key", "_key", "_secret", "_token")
SECRET_NAMES = ("key", "key_file")


def is_secret(name: str) -> bool:
    """A setting that must not leave the web process: the key, and every *_key, *_secret, *_token."""
    return name in SECRET_NAMES or name.endswith(SECRET_SUFFIXES)


def without_secrets(settings: Settings) -> Settings:
    """`settings` with every secret blanked: what render workers and Ray actors are given."""
    blank: dict[str, Any] = {}
    for name, f in _FIELDS.items():
        if is_secret(name) and getattr(settings, name) not in (None, ""):
            blank[name] = None if f.default in (None, dataclasses.MISSING) else type(f.default)()
    return dataclasses.replace(settings, **blank)


def settings_to_json(settings: Settings) -> dict[str, Any]:
    """Plain JSON values (for a worker process's arguments)."""
    out: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(settings, name)
        out[name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
    return out


def settings_from_json(data: Mapping[str, Any]) -> Settings:
    return Settings(**{k: _coerce(k, v) for k, v in data.items()})
