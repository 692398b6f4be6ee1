"""Video encoder settings for aiortc: a fast x264 preset (or NVENC), and a clamped bitrate.

aiortc builds x264 with its default preset `medium` (~33 ms per 720p frame on one core) and
rebuilds the encoder (a keyframe and a visible stall) whenever REMB moves the bitrate by more
than 10 %. aiortc has no setting for either, so `install` replaces the encoder factory its RTP
sender calls with one that returns the encoders below.
"""

from __future__ import annotations

import fractions
import logging
from dataclasses import dataclass
from typing import Iterator

import av
from aiortc import rtcrtpsender
from aiortc.codecs import get_encoder as aiortc_get_encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder

from streamer.units import FPS

log = logging.getLogger(__name__)

BAND = 0.05
"""REMB may move the bitrate only this far from the target: below aiortc's 10 % rebuild step."""


@dataclass(frozen=True)
class EncoderSettings:
    bitrate: int = 1_500_000
    x264_preset: str = "superfast"
    h264_codec: str = "libx264"
    """`libx264` or `h264_nvenc`."""

    def clamp(self, bitrate: int) -> int:
        low, high = int(self.bitrate * (1 - BAND)), int(self.bitrate * (1 + BAND))
        return max(low, min(bitrate, high))


def nvenc_available() -> bool:
    """True when this ffmpeg build has NVENC and a GPU can open it (no CUDA init in Python)."""
    try:
        ctx = av.CodecContext.create("h264_nvenc", "w")
        ctx.width, ctx.height, ctx.pix_fmt = 64, 64, "yuv420p"
        ctx.time_base = fractions.Fraction(1, FPS)
        ctx.open()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


class ClampedBitrate:
    """`target_bitrate` as aiortc's encoders expose it, held within BAND of the target."""

    _settings: EncoderSettings
    _bitrate: int

    @property
    def target_bitrate(self) -> int:
        return self._bitrate

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._bitrate = self._settings.clamp(bitrate)


class TunedH264Encoder(ClampedBitrate, H264Encoder):
    """aiortc's H.264 packetizer with our own encoder context: preset, NVENC, fixed bitrate."""

    def __init__(self, settings: EncoderSettings) -> None:
        super().__init__()
        self._settings = settings
        self._bitrate = settings.bitrate

    def _open(self, frame: av.VideoFrame) -> av.CodecContext:
        if self._settings.h264_codec == "h264_nvenc":
            try:
                codec = self._context(frame, "h264_nvenc")
                codec.open()
                return codec
            except Exception as exc:  # noqa: BLE001 - e.g. the GPU's NVENC session limit
                log.warning("NVENC could not open (%s); this session encodes with libx264", exc)
        return self._context(frame, "libx264")

    def _context(self, frame: av.VideoFrame, name: str) -> av.CodecContext:
        codec = av.CodecContext.create(name, "w")
        codec.width, codec.height = frame.width, frame.height
        codec.bit_rate = self._bitrate
        codec.pix_fmt = "yuv420p"
        codec.framerate = fractions.Fraction(FPS, 1)
        codec.time_base = fractions.Fraction(1, FPS)
        if name == "h264_nvenc":
            codec.options = {"preset": "p1", "tune": "ull", "zerolatency": "1", "bf": "0"}
        else:
            codec.options = {
                "preset": self._settings.x264_preset,
                "tune": "zerolatency",
                "level": "31",
            }
        codec.profile = "Baseline" if name == "libx264" else "baseline"
        return codec

    def _encode_frame(self, frame: av.VideoFrame, force_keyframe: bool) -> Iterator[bytes]:
        if self.codec and (frame.width != self.codec.width or frame.height != self.codec.height):
            self.buffer_data, self.buffer_pts, self.codec = b"", None, None
        frame.pict_type = (
            av.video.frame.PictureType.I if force_keyframe else av.video.frame.PictureType.NONE
        )
        if self.codec is None:
            self.codec = self._open(frame)
        data = b"".join(bytes(packet) for packet in self.codec.encode(frame))
        if data:
            yield from self._split_bitstream(data)


class ClampedVp8Encoder(ClampedBitrate, Vp8Encoder):
    """aiortc's VP8 encoder at a fixed bitrate band, so REMB never rebuilds it."""

    def __init__(self, settings: EncoderSettings) -> None:
        self._settings = settings
        self._bitrate = settings.bitrate
        super().__init__()
        # aiortc sizes VP8's rate-control buffer from its own private copy of the bitrate
        # (500 kbit/s): give it ours, or the buffer holds a third of a second, not one.
        self._Vp8Encoder__target_bitrate = settings.bitrate


def make_encoder(codec, settings: EncoderSettings):
    mime = codec.mimeType.lower()
    if mime == "video/h264":
        return TunedH264Encoder(settings)
    if mime == "video/vp8":
        return ClampedVp8Encoder(settings)
    return aiortc_get_encoder(codec)


def install(settings: EncoderSettings) -> None:
    """Make every aiortc RTP sender in this process use `make_encoder` with `settings`."""
    rtcrtpsender.get_encoder = lambda codec: make_encoder(codec, settings)
    log.info(
        "video encoders: H.264 %s%s, VP8 libvpx, %d kbit/s ±%d %%",
        settings.h264_codec,
        f" preset {settings.x264_preset}" if settings.h264_codec == "libx264" else "",
        settings.bitrate // 1000,
        int(BAND * 100),
    )


def uninstall() -> None:
    """Back to aiortc's stock encoders (the benchmark compares both in one run)."""
    rtcrtpsender.get_encoder = aiortc_get_encoder
