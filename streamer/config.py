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
from streamer.settings_slices import ListeningSettings, RenderSettings, ReplySettings, SpeechSettings

ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "STREAMER_"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback_host(host: str) -> bool:
    """The one loopback rule: a bind address or a Host header's name (port stripped by the caller)."""
    return host.lower() in LOOPBACK_HOSTS


@dataclass(frozen=True)
class Settings(SpeechSettings, RenderSettings, ReplySettings, ListeningSettings):
    """Every setting, one flat set of names; the layers' slices (settings_slices.py) are its bases."""

    host: str = "127.0.0.1"
    port: int = 8080
    key: str | None = None
    """Server key; required when binding anything but loopback. Grants control of every session."""
    key_file: Path | None = None
    """A file holding the server key (first line), so that no command line shows it."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the API from a browser (an allow-list; there is no wildcard)."""

    web_dir: Path = resources.WEB

    max_sessions: int = 16
    max_audio_bytes: int = 20 * 1024 * 1024
    render_timeout_s: float = 30.0

    video_codec: str = "auto"
    """`auto` (browser's choice), `h264` or `vp8`."""
    x264_preset: str = "ultrafast"
    video_bitrate: int = 1_500_000
    """Target bitrate of the ladder's top step; within a step REMB does not move it (aiortc
    rebuilds an encoder past 10 %)."""
    h264_encoder: str = "auto"
    """`auto` (NVENC when ffmpeg has it, else libx264), `libx264` or `h264_nvenc`."""

    # Render plane
    pool: str = "local"
    """`local` (a worker process per device) or `ray` (a render actor per device of a Ray cluster)."""
    ray_address: str = "auto"
    """The Ray cluster `pool = "ray"` joins (`auto`: the one this machine belongs to)."""
    ray_namespace: str = "streamer"
    """Ray namespace of the named render actors: fronts in the same one share them."""
    admission_threshold: float = 0.8
    """Share of the measured render capacity that the admitted sessions may plan to use."""
    speaking_share: float = 1.0
    """Share of its time an open session is expected to speak (1.0: all of it)."""

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
    (webrtc/ladder.py); false holds `video_bitrate` and the full size whatever the link."""

    def public_binding(self) -> bool:
        return not is_loopback_host(self.host)

    def validate(self) -> Settings:
        if self.public_binding() and not self.key:
            raise BadInput(
                f"binding {self.host} exposes the service: set a server key "
                "(--key, STREAMER_KEY or `key` in the config file)"
            )
        if self.pool not in ("local", "ray"):
            raise BadInput(f"unknown pool {self.pool!r} (local or ray)")
        if not 0 < self.admission_threshold <= 1 or not 0 < self.speaking_share <= 1:
            raise BadInput("admission_threshold and speaking_share must be in (0, 1]")
        if self.video_codec not in ("auto", "h264", "vp8"):
            raise BadInput(f"unknown video codec {self.video_codec!r} (auto, h264 or vp8)")
        if (self.ice_port_min, self.ice_port_max) != (0, 0) and not (
            1024 <= self.ice_port_min <= self.ice_port_max <= 65535
        ):
            raise BadInput("ice_port_min..ice_port_max must be a range within 1024..65535")
        if self.grant_store != "memory" and not self.grant_store.startswith(("redis://", "rediss://", "unix://")):
            raise BadInput(f"unknown grant_store {self.grant_store!r} (memory or redis://host:port/db)")
        if self.read_timeout_s <= 0 or self.decode_timeout_s <= 0 or self.max_sockets_per_session < 1:
            raise BadInput("read_timeout_s, decode_timeout_s and max_sockets_per_session must be positive")
        parse_ice_servers(self.ice_servers)  # a bad URL stops the start, with its reason
        self._validate_speech()
        self._validate_render()
        self._validate_reply()
        self._validate_listening()
        return self


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


def render_slice(settings: Settings) -> RenderSettings:
    """The settings a render worker is given (a process or a Ray actor): its slice alone, which
    holds no secret and nothing of the other layers."""
    return RenderSettings(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(RenderSettings)})


def settings_to_json(settings: RenderSettings) -> dict[str, Any]:
    """Plain JSON values (for a worker process's arguments)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        out[f.name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
    return out


def render_settings_from_json(data: Mapping[str, Any]) -> RenderSettings:
    """A render worker's slice back from `settings_to_json(render_slice(...))`."""
    return RenderSettings(**{k: _coerce(k, v) for k, v in data.items()})
