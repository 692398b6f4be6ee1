"""Video encoder settings for aiortc: a fast x264 preset (or NVENC), a right-sized VP8, and a
clamped bitrate.

aiortc builds x264 with its default preset `medium` (~33 ms per 720p frame on one core), VP8
with `cpu-used -6`, and rebuilds the encoder (a keyframe and a visible stall) whenever REMB
moves the bitrate by more than 10 %. aiortc has no setting for any of it, so each session hands
its senders the encoders below (`attach`), built with its settings and its ladder. They lean on
private parts of aiortc (webrtc/hooks.py), which is why pyproject pins aiortc to one minor version.
"""

from __future__ import annotations

import fractions
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import av
from aiortc import RTCPeerConnection, rtp, sdp
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.rtcrtpsender import RTCRtpSender
from av.video.codeccontext import VideoCodecContext

from streamer.config import Settings
from streamer.units import FPS, VIDEO_CLOCK
from streamer.webrtc import hooks
from streamer.webrtc.ladder import Ladder
from streamer.webrtc.opus import LeanOpusEncoder, audio_level_dbov
from streamer.webrtc.rate import BAND, ClampedBitrate

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
CHEAPER_CODEC = "h264"
"""Offered first when the viewer takes both (bench/encoder.py: x264 costs less than VP8 at the
same PSNR on a talking head)."""


@dataclass(frozen=True)
class EncoderSettings:
    bitrate: int = 1_500_000
    x264_preset: str = "ultrafast"
    h264_codec: str = "libx264"
    """`libx264` or `h264_nvenc`."""
    vp8_cpu_used: int = 16
    """libvpx `cpu-used` in realtime mode: higher is faster (aiortc: -6, adaptive)."""
    threads: int = 1
    """Encoder threads per session: one is the least CPU per frame, and a server runs many."""
    vp8_static_thresh: int = 500
    """Macroblocks whose squared error against the reference is under this are skipped: a
    still background and an idle face cost almost nothing (bench/encoder.py: quality stays
    above aiortc's own VP8)."""

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


class TunedH264Encoder(ClampedBitrate, H264Encoder):
    """aiortc's H.264 packetizer with our own encoder context: preset, NVENC, fixed bitrate."""

    def __init__(self, settings: EncoderSettings, ladder: Ladder | None = None) -> None:
        super().__init__()
        self._settings: EncoderSettings = settings
        self._bitrate = settings.bitrate
        self._ladder = ladder

    def _open(self, frame: av.VideoFrame) -> VideoCodecContext:
        if self._settings.h264_codec == "h264_nvenc":
            try:
                codec = self._context(frame, "h264_nvenc")
                codec.open()
                return codec
            except Exception as exc:  # noqa: BLE001 - e.g. the GPU's NVENC session limit
                log.warning("NVENC could not open (%s); this session encodes with libx264", exc)
        return self._context(frame, "libx264")

    def _context(self, frame: av.VideoFrame, name: str) -> VideoCodecContext:
        codec = cast(VideoCodecContext, av.CodecContext.create(name, "w"))  # a video codec's context
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
                "maxrate": str(self._bitrate),  # a 1 s VBV: a fresh encoder (a ladder step)
                "bufsize": str(self._bitrate),  # cannot overshoot its step's bitrate
            }
        codec.profile = "Baseline" if name == "libx264" else "baseline"
        codec.thread_count = self._settings.threads
        return codec

    def _encode_frame(self, frame: av.VideoFrame, force_keyframe: bool) -> Iterator[bytes]:
        frame = self._follow(frame)
        if self._stale(self.codec, frame):
            self.buffer_data, self.buffer_pts, self.codec = b"", None, None
        frame.pict_type = (
            av.video.frame.PictureType.I if self._keyframe(force_keyframe) else av.video.frame.PictureType.NONE
        )
        if self.codec is None:
            self.codec = self._open(frame)
            self._opened()
        data = b"".join(bytes(packet) for packet in self.codec.encode(frame))
        self._sent(len(data))
        if data:
            yield from self._split_bitstream(data)


class TunedVp8Encoder(ClampedBitrate, Vp8Encoder):
    """aiortc's VP8 packetizer with our own libvpx context: speed, threads, static threshold,
    a one-second buffer capped at the bitrate (no floor: a still face is not padded to it), at a
    fixed bitrate band so REMB never rebuilds it."""

    def __init__(self, settings: EncoderSettings, ladder: Ladder | None = None) -> None:
        super().__init__()
        self._settings: EncoderSettings = settings
        self._bitrate = settings.bitrate
        self._ladder = ladder

    def _context(self, frame: av.VideoFrame) -> VideoCodecContext:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = frame.width, frame.height
        codec.bit_rate = self._bitrate
        codec.pix_fmt = "yuv420p"
        codec.gop_size = 3000  # keyframes only when the receiver asks (PLI) or the step changes
        codec.qmin, codec.qmax = 2, 56
        codec.thread_count = self._settings.threads
        rate = str(self._bitrate)
        codec.options = {
            "deadline": "realtime",
            "cpu-used": str(self._settings.vp8_cpu_used),
            "lag-in-frames": "0",
            "static-thresh": str(self._settings.vp8_static_thresh),
            "bufsize": rate,  # one second of rate-control buffer
            "maxrate": rate,
            "undershoot-pct": "100",
            "overshoot-pct": "15",
            "noise-sensitivity": "0",
            "partitions": "0",
        }
        return codec

    def encode(  # type: ignore[override]  # aiortc hands a video encoder video frames only
        self, frame: av.VideoFrame, force_keyframe: bool = False
    ) -> tuple[list[bytes], int]:
        frame = self._follow(frame)
        if self._stale(self.codec, frame):
            self.codec = None
        frame.pict_type = (
            av.video.frame.PictureType.I if self._keyframe(force_keyframe) else av.video.frame.PictureType.NONE
        )
        if self.codec is None:
            self.codec = self._context(frame)
            self._opened()
        data = b"".join(bytes(packet) for packet in self.codec.encode(frame))
        self._sent(len(data))
        payloads = self._packetize(data, self.picture_id)
        self.picture_id = (self.picture_id + 1) % (1 << 15)
        assert frame.pts is not None and frame.time_base is not None, "aiortc stamps every frame"
        return payloads, int(frame.pts * frame.time_base / VIDEO_TIME_BASE)


def make_encoder(mime: str, settings: EncoderSettings, ladder: Ladder | None = None) -> Encoder | None:
    """Our encoder for a negotiated codec (`video/VP8`, …); None leaves aiortc's own."""
    mime = mime.lower()
    if mime == "video/h264":
        return TunedH264Encoder(settings, ladder)
    if mime == "video/vp8":
        return TunedVp8Encoder(settings, ladder)
    if mime == "audio/opus":
        return LeanOpusEncoder()
    return None


def encoder_settings(settings: Settings) -> EncoderSettings:
    """A session's encoder settings (`h264_encoder = auto`: NVENC when this machine has it)."""
    h264 = settings.h264_encoder
    if h264 == "auto":
        h264 = "h264_nvenc" if _nvenc() else "libx264"
    return EncoderSettings(
        bitrate=settings.video_bitrate,
        x264_preset=settings.x264_preset,
        h264_codec=h264,
        vp8_cpu_used=settings.vp8_cpu_used,
    )


@functools.cache
def _nvenc() -> bool:
    return nvenc_available()


def attach(pc: RTCPeerConnection, settings: EncoderSettings, ladder: Ladder | None) -> None:
    """Give each sender of `pc` our encoder for the codec its answer chose (call after
    setLocalDescription, before the media starts); the video encoder follows `ladder`."""
    chosen = sent_codecs(pc.localDescription.sdp)
    for transceiver in pc.getTransceivers():
        mime = chosen.get(transceiver.kind)
        encoder = make_encoder(mime, settings, ladder if transceiver.kind == "video" else None) if mime else None
        if encoder is not None:
            hooks.set_encoder(transceiver.sender, encoder)


def codec_preferences(video_codec: str, prefer_cheaper: bool) -> list[RTCRtpCodecCapability]:
    """The video codecs to offer in order, with their RTX formats; [] keeps the browser's order.

    `video_codec` `h264`/`vp8` offers only that codec; `auto` offers `CHEAPER_CODEC` first when
    `prefer_cheaper`, then the others, so a viewer without it still connects.
    """
    if video_codec == "auto" and not prefer_cheaper:
        return []
    first = CHEAPER_CODEC if video_codec == "auto" else video_codec
    codecs = RTCRtpSender.getCapabilities("video").codecs
    rtx = [c for c in codecs if c.mimeType.lower() == "video/rtx"]
    ours = [c for c in codecs if c.mimeType.lower() == f"video/{first}"]
    if video_codec != "auto":
        return ours + rtx
    others = [c for c in codecs if c not in ours and c not in rtx]
    return ours + others + rtx


def sent_codecs(answer_sdp: str) -> dict[str, str]:
    """The codec each media kind of this answer sends (the first of its section), by kind."""
    chosen: dict[str, str] = {}
    for media in sdp.SessionDescription.parse(answer_sdp).media:
        if media.kind in ("audio", "video") and media.rtp.codecs:
            chosen.setdefault(media.kind, media.rtp.codecs[0].mimeType)
    return chosen


def sends_opus(answer_sdp: str) -> bool:
    """Whether the audio this answer sends is Opus (the first codec of its audio section)."""
    return sent_codecs(answer_sdp).get("audio", "").lower() == "audio/opus"


_aiortc_audio_level = rtp.compute_audio_level_dbov


def install(settings: EncoderSettings) -> None:
    """Compute audio levels in numpy, not in a Python loop on the event loop (for viewers whose
    audio aiortc encodes; Opus audio comes encoded from the pump), and log the default encoder
    settings. Each session builds its own encoders (`attach`)."""
    rtp.compute_audio_level_dbov = audio_level_dbov
    log.info(
        "video encoders: H.264 %s%s, VP8 libvpx cpu-used %d, %d kbit/s ±%d %%",
        settings.h264_codec,
        f" preset {settings.x264_preset}" if settings.h264_codec == "libx264" else "",
        settings.vp8_cpu_used,
        settings.bitrate // 1000,
        int(BAND * 100),
    )


def uninstall() -> None:
    """Back to aiortc's own audio levels."""
    rtp.compute_audio_level_dbov = _aiortc_audio_level
