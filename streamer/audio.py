"""Audio intake: decode uploads and files, resample, and resample live PCM chunks.

Everything leaves here as float32 mono in [-1, 1]. PyAV (FFmpeg) does the container work and
the resampling; channels are averaged here rather than by FFmpeg, whose stereo-to-mono matrix
adds both channels at -3 dB (two full-scale channels give 1.41). FFmpeg hands us packed
samples (one plane of interleaved channels): a planar frame with an unnamed layout made PyAV
read a plane that is not there and crash (an 8-channel WAV).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import av
import numpy as np

from streamer.errors import BadInput, TooLarge, UnsupportedMedia
from streamer.units import MODEL_RATE, OUT_RATE

ACCEPTED_TYPES = (
    "audio/wav, audio/mpeg, audio/ogg, audio/webm, audio/flac, audio/mp4, "
    "audio/L16;rate=N, audio/pcm;rate=N or application/octet-stream"
)
_CONTAINER_TYPES = {"application/octet-stream", "application/ogg", "video/webm", "video/ogg", "video/mp4"}
"""Non-`audio/` types that still name a container holding audio (MediaRecorder says video/webm)."""
_AV_ERRORS = (av.FFmpegError, ValueError, OSError, EOFError, RuntimeError)
MAX_CHANNELS = 8
"""The most channels an upload may have (7.1); more is refused with a 400 that says so."""


def decode(data: bytes, content_type: str | None, rate: int, max_seconds: float) -> np.ndarray:
    """Decode an uploaded body to float32 mono at `rate`; raw PCM when the type says so."""
    if not data:
        raise BadInput("empty audio body")
    mime, params = _parse_content_type(content_type)
    if mime in ("audio/l16", "audio/pcm"):
        samples, in_rate = _raw_pcm(data, mime, params)
        if len(samples) > max_seconds * in_rate:
            raise TooLarge(_too_long(len(samples) / in_rate, max_seconds))
        return resample(samples, in_rate, rate)
    if mime is not None and not (mime.startswith("audio/") or mime in _CONTAINER_TYPES):
        raise UnsupportedMedia(f"unsupported content type {mime!r}: send {ACCEPTED_TYPES}")
    return _decode_container(io.BytesIO(data), rate, max_seconds)


def decode_speech(data: bytes, content_type: str | None, max_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """An upload as speech: float32 mono at the output rate (48 kHz) and at the model rate (16 kHz)."""
    audio48k = decode(data, content_type, OUT_RATE, max_seconds)
    return audio48k, resample(audio48k, OUT_RATE, MODEL_RATE)


def decode_file(path: Path, rate: int) -> np.ndarray:
    """Decode an audio (or video) file's first audio stream to float32 mono at `rate`."""
    try:
        source = Path(path).read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read audio file {path}: {exc.strerror or exc}") from None
    if not source:
        raise BadInput(f"empty audio file {path}")
    return _decode_container(io.BytesIO(source), rate, None)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample float mono; the result has exactly round(len × to_rate / from_rate) samples."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if from_rate == to_rate:
        return samples.copy()
    stream = _Resampler(from_rate, to_rate)
    return np.concatenate([stream.push(samples), stream.flush()])


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float in [-1, 1] to int16, clipped (no wrap-around on overload)."""
    scaled = np.round(np.asarray(samples, dtype=np.float32) * 32767.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def from_int16(samples: np.ndarray) -> np.ndarray:
    return np.asarray(samples, dtype=np.int16).astype(np.float32) / 32768.0


class PcmStream:
    """Live s16le mono chunks (any chunk size) resampled to several rates as they arrive.

    Output counts are exact: after `flush`, each rate has produced round(n_in × rate / in_rate)
    samples, so whole 40 ms units stay paired across the 16 kHz and 48 kHz streams.
    """

    def __init__(self, in_rate: int, rates: tuple[int, ...] = (16000, 48000)) -> None:
        if in_rate <= 0 or any(r <= 0 for r in rates):
            raise BadInput(f"sample rates must be positive, got {in_rate} → {rates}")
        self.in_rate = in_rate
        self.rates = tuple(rates)
        self._pending = b""
        self._streams = {r: _Resampler(in_rate, r) for r in self.rates}

    def push(self, chunk: bytes) -> dict[int, np.ndarray]:
        data = self._pending + bytes(chunk)
        whole = len(data) - len(data) % 2
        self._pending = data[whole:]
        samples = from_int16(np.frombuffer(data[:whole], dtype="<i2"))
        return {r: s.push(samples) for r, s in self._streams.items()}

    def flush(self) -> dict[int, np.ndarray]:
        """The resamplers' tails; a lone trailing byte (half a sample) is dropped."""
        self._pending = b""
        return {r: s.flush() for r, s in self._streams.items()}


class _Resampler:
    """One float mono stream through FFmpeg's resampler, with exact total output counts."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._av = None if from_rate == to_rate else av.AudioResampler("flt", "mono", to_rate)
        self._in = 0
        self._out = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        if len(samples) == 0:
            return np.zeros(0, np.float32)
        self._in += len(samples)
        if self._av is None:
            return self._emit([samples])
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.from_rate
        return self._emit(f.to_ndarray().reshape(-1) for f in self._av.resample(frame))

    def flush(self) -> np.ndarray:
        frames = [] if self._av is None else self._av.resample(None)
        out = self._emit(f.to_ndarray().reshape(-1) for f in frames)
        short = self._expected() - self._out
        if short > 0:  # the filter's delay can leave the total a sample or two short
            self._out += short
            out = np.concatenate([out, np.zeros(short, np.float32)])
        return out

    def _expected(self) -> int:
        return (self._in * self.to_rate + self.from_rate // 2) // self.from_rate

    def _emit(self, parts: Iterable[Any]) -> np.ndarray:
        parts = [np.asarray(p, np.float32) for p in parts]
        out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        out = out[: max(0, self._expected() - self._out)]  # never more than the input accounts for
        self._out += len(out)
        return out


PCM_RATES = (8000, 96000)
"""Lowest and highest sample rate accepted for raw PCM (uploads and live streams)."""


def check_pcm_rate(rate: object) -> int:
    if not isinstance(rate, int) or isinstance(rate, bool) or not PCM_RATES[0] <= rate <= PCM_RATES[1]:
        raise BadInput(f"sample_rate must be an integer from {PCM_RATES[0]} to {PCM_RATES[1]}, got {rate!r}")
    return rate


def _parse_content_type(content_type: str | None) -> tuple[str | None, dict[str, str]]:
    if not content_type or not content_type.strip():
        return None, {}
    main, *rest = content_type.split(";")
    params = {}
    for item in rest:
        key, _, value = item.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return main.strip().lower(), params


def _raw_pcm(data: bytes, mime: str, params: dict[str, str]) -> tuple[np.ndarray, int]:
    """RFC 2586 audio/L16 (big-endian s16) or audio/pcm (s16le); channels are interleaved."""
    try:
        in_rate = int(params["rate"])
        channels = int(params.get("channels", "1"))
    except (KeyError, ValueError):
        raise BadInput(f"{mime} needs an integer rate, e.g. '{mime};rate=16000'") from None
    check_pcm_rate(in_rate)
    if not 1 <= channels <= 8:
        raise BadInput(f"{mime}: channels must be 1 to 8, got {channels}")
    if len(data) % (2 * channels):
        raise BadInput(f"{mime} body of {len(data)} bytes is not whole {channels}-channel samples")
    dtype = ">i2" if mime == "audio/l16" else "<i2"
    frames = np.frombuffer(data, dtype=dtype).reshape(-1, channels)
    return from_int16(frames.astype(np.int16)).mean(axis=1, dtype=np.float32), in_rate


def _decode_container(source: io.BytesIO, rate: int, max_seconds: float | None) -> np.ndarray:
    parts: list[np.ndarray] = []
    decoded = 0.0
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.audio:
                raise BadInput("could not decode audio: no audio stream found")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout=None, rate=rate)  # packed, input's layout
            for frame in container.decode(stream):
                _check_channels(frame)
                decoded += frame.samples / frame.sample_rate
                if max_seconds is not None and decoded > max_seconds:
                    raise TooLarge(_too_long(decoded, max_seconds, at_least=True))
                parts.extend(_mono(f) for f in resampler.resample(frame))
            parts.extend(_mono(f) for f in resampler.resample(None))
    except _AV_ERRORS as exc:
        raise BadInput(f"could not decode audio: {exc}") from None
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if len(samples) == 0:
        raise BadInput("could not decode audio: no samples")
    return np.clip(samples, -1.0, 1.0)


def _check_channels(frame: av.AudioFrame) -> None:
    channels = frame.layout.nb_channels
    if not 1 <= channels <= MAX_CHANNELS:
        raise BadInput(f"the audio has {channels} channels; at most {MAX_CHANNELS} are supported: downmix it first")


def _mono(frame: av.AudioFrame) -> np.ndarray:
    """The average of a packed frame's channels (one plane, samples interleaved)."""
    channels = frame.layout.nb_channels
    if frame.format.is_planar or len(frame.planes) != 1 or not 1 <= channels <= MAX_CHANNELS:
        raise BadInput(f"could not decode audio: unexpected {frame.format.name} frame of {channels} channels")
    interleaved = frame.to_ndarray().reshape(-1)
    mono: np.ndarray = interleaved.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return mono


def _too_long(seconds: float, limit: float, at_least: bool = False) -> str:
    more = "more than " if at_least else ""
    return f"audio lasts {more}{seconds:.1f} s; the limit is {limit:g} s"
