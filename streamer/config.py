"""Settings: one frozen dataclass, built once from defaults < TOML file < environment < CLI."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the API from a browser (an allow-list; there is no wildcard)."""

    templates_dir: Path = ROOT / "templates"
    cache_dir: Path = ROOT / "cache"
    web_dir: Path = ROOT / "web"

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
    """`espeak`, `piper`, `none`, or `auto` (piper when a voice is set, else espeak-ng if installed)."""
    piper_voice: Path | None = None
    tts_voice: str = "en-us"

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
    realtime_fp16: bool = False
    """On CUDA, run whisper, the VAE and the positional encoding in fp16 too (the official
    realtime script's precision); off until GPU figures say it is safe."""

    # Render plane
    pool: str = "local"
    """`local` (a worker process per device) or `ray` (a render actor per device of a Ray cluster)."""
    ray_address: str = "auto"
    """The Ray cluster `pool = "ray"` joins (`auto`: the one this machine belongs to)."""
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
        if self.video_codec not in ("auto", "h264", "vp8"):
            raise BadInput(f"unknown video codec {self.video_codec!r} (auto, h264 or vp8)")
        if not 0.04 <= self.first_window_s <= self.window_s:
            raise BadInput("first_window_s must be between 0.04 s and window_s")
        if (self.ice_port_min, self.ice_port_max) != (0, 0) and not (
            1024 <= self.ice_port_min <= self.ice_port_max <= 65535
        ):
            raise BadInput("ice_port_min..ice_port_max must be a range within 1024..65535")
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
    if name in ("models", "piper_voice") or isinstance(default, Path):
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
    return Settings(**values).validate()


def settings_to_json(settings: Settings) -> dict[str, Any]:
    """Plain JSON values (for a worker process's arguments)."""
    out: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(settings, name)
        out[name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
    return out


def settings_from_json(data: Mapping[str, Any]) -> Settings:
    return Settings(**{k: _coerce(k, v) for k, v in data.items()})
