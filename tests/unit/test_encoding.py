"""Encoder settings: a fast x264 preset, and a bitrate REMB cannot move far enough to rebuild."""

import fractions

import av
import numpy as np
from aiortc import RTCRtpCodecParameters, rtcrtpsender
from aiortc.codecs import get_encoder as aiortc_get_encoder
from aiortc.codecs.h264 import H264Encoder

from streamer.media import encoding
from streamer.media.encoding import ClampedVp8Encoder, EncoderSettings, TunedH264Encoder


def frames(count: int, size: int = 256):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    for n in range(count):
        image = np.roll(base, n * 3, axis=1)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        frame.pts, frame.time_base = n * 3600, fractions.Fraction(1, 90000)
        yield frame


def test_h264_context_has_the_configured_preset_and_its_stream_decodes():
    encoder = TunedH264Encoder(EncoderSettings(bitrate=1_000_000, x264_preset="superfast"))
    stream = list(frames(10))
    context = encoder._open(stream[0])
    assert context.options["preset"] == "superfast" and context.options["tune"] == "zerolatency"
    assert context.bit_rate == 1_000_000
    decoder = av.CodecContext.create("h264", "r")
    decoded = []
    for frame in stream:
        for packet in context.encode(frame):
            decoded += decoder.decode(packet)
    assert len(decoded) == 10 and decoded[0].width == 256  # zerolatency: no frames held back


def test_rtp_payloads_carry_the_frames_timestamps():
    encoder = TunedH264Encoder(EncoderSettings())
    for n, frame in enumerate(frames(5)):
        payloads, timestamp = encoder.encode(frame, force_keyframe=n == 0)
        assert payloads and timestamp == n * 3600


def test_remb_moves_do_not_rebuild_our_encoders_but_rebuild_stock_ones():
    settings = EncoderSettings(bitrate=1_500_000)
    for ours in (TunedH264Encoder(settings), ClampedVp8Encoder(settings)):
        stream = frames(6)
        ours.encode(next(stream), True)
        codec = ours.codec
        for bitrate in (3_000_000, 500_000, 1_350_000, 1_800_000):
            ours.target_bitrate = bitrate
            ours.encode(next(stream), False)
            assert ours.codec is codec  # same context: no keyframe, no stall
        assert abs(ours.target_bitrate - 1_500_000) <= 0.05 * 1_500_000

    stock = H264Encoder()
    stream = frames(2)
    stock.encode(next(stream), True)
    codec = stock.codec
    stock.target_bitrate = stock.target_bitrate * 2
    stock.encode(next(stream), False)
    assert stock.codec is not codec  # what the clamp prevents


def test_install_swaps_the_senders_encoder_factory_and_uninstall_restores_it():
    h264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    try:
        encoding.install(EncoderSettings())
        assert isinstance(rtcrtpsender.get_encoder(h264), TunedH264Encoder)
        assert type(rtcrtpsender.get_encoder(opus)).__name__ == "OpusEncoder"
    finally:
        encoding.uninstall()
    assert rtcrtpsender.get_encoder is aiortc_get_encoder


def test_nvenc_that_cannot_open_falls_back_to_x264():
    encoder = TunedH264Encoder(EncoderSettings(h264_codec="h264_nvenc"))
    stream = frames(3)
    payloads, _ = encoder.encode(next(stream), force_keyframe=True)
    assert payloads  # encoded all the same
    if not encoding.nvenc_available():
        assert encoder.codec.name == "libx264"
