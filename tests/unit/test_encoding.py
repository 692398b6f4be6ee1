"""Encoder settings: a fast x264 preset, a right-sized VP8, a bitrate REMB cannot move far
enough to rebuild, the codec order offered, each session's senders given our encoders (the aiortc
internals all of it leans on: test_webrtc_hooks.py)."""

import fractions

import av
import numpy as np
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection, VideoStreamTrack, rtp
from aiortc.codecs.h264 import H264Encoder

from streamer.config import Settings
from streamer.webrtc import encoding, hooks
from streamer.webrtc.encoding import EncoderSettings, TunedH264Encoder, TunedVp8Encoder
from streamer.webrtc.ladder import Ladder
from streamer.webrtc.opus import LeanOpusEncoder, audio_level_dbov


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
    for ours in (TunedH264Encoder(settings), TunedVp8Encoder(settings)):
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


async def test_attach_gives_each_sender_our_encoder_for_the_answers_codec_with_the_ladder():
    ladder = Ladder(900_000)
    for codec, ours in (("h264", TunedH264Encoder), ("vp8", TunedVp8Encoder)):
        viewer, server = (
            RTCPeerConnection(RTCConfiguration(iceServers=[])),
            RTCPeerConnection(RTCConfiguration(iceServers=[])),
        )
        try:
            viewer.addTransceiver("video", direction="recvonly")
            viewer.addTransceiver("audio", direction="recvonly")
            await viewer.setLocalDescription(await viewer.createOffer())
            video = server.addTransceiver(VideoStreamTrack(), direction="sendonly")
            video.setCodecPreferences(encoding.codec_preferences(codec, prefer_cheaper=True))
            audio = server.addTransceiver(AudioStreamTrack(), direction="sendonly")
            await server.setRemoteDescription(viewer.localDescription)
            await server.setLocalDescription(await server.createAnswer())
            assert hooks.encoder_of(video.sender) is None  # aiortc builds its own on the first frame
            encoding.attach(server, EncoderSettings(bitrate=900_000), ladder)
            encoder = hooks.encoder_of(video.sender)
            assert type(encoder) is ours and encoder._ladder is ladder
            encoder.target_bitrate = 400_000  # what the sender does on REMB
            assert ladder.remb == 400_000
            assert type(hooks.encoder_of(audio.sender)) is LeanOpusEncoder
        finally:
            await viewer.close()
            await server.close()


def test_encoder_settings_follow_the_settings():
    made = encoding.encoder_settings(Settings(video_bitrate=700_000, x264_preset="veryfast", h264_encoder="libx264"))
    assert made == EncoderSettings(bitrate=700_000, x264_preset="veryfast", h264_codec="libx264", vp8_cpu_used=16)
    assert encoding.make_encoder("audio/PCMU", made) is None  # aiortc's own for anything else


def test_install_computes_audio_levels_in_numpy_and_uninstall_restores_aiortcs():
    try:
        encoding.install(EncoderSettings())
        assert rtp.compute_audio_level_dbov is audio_level_dbov
    finally:
        encoding.uninstall()
    assert rtp.compute_audio_level_dbov is encoding._aiortc_audio_level
    encoding.install(EncoderSettings())  # as every server in this process has it


def test_nvenc_that_cannot_open_falls_back_to_x264():
    encoder = TunedH264Encoder(EncoderSettings(h264_codec="h264_nvenc"))
    stream = frames(3)
    payloads, _ = encoder.encode(next(stream), force_keyframe=True)
    assert payloads  # encoded all the same
    if not encoding.nvenc_available():
        assert encoder.codec.name == "libx264"


def test_vp8_context_is_realtime_with_our_speed_and_a_capped_one_second_buffer_and_decodes():
    settings = EncoderSettings(bitrate=1_200_000, vp8_cpu_used=12, vp8_static_thresh=100)
    encoder = TunedVp8Encoder(settings)
    stream = list(frames(6))
    options = encoder._context(stream[0]).options
    payloads, timestamp = encoder.encode(stream[0], force_keyframe=True)
    assert options["cpu-used"] == "12" and options["deadline"] == "realtime"
    assert options["static-thresh"] == "100" and options["bufsize"] == options["maxrate"] == "1200000"
    assert "minrate" not in options  # capped, not padded: a still face sends few bits
    assert encoder.codec.bit_rate == 1_200_000 and payloads and timestamp == 0
    decoder = av.CodecContext.create("libvpx", "r")
    decoded = []
    stream[1].pict_type = av.video.frame.PictureType.I  # the decoder starts here
    for frame in stream[1:]:
        for packet in encoder.codec.encode(frame):
            decoded += decoder.decode(packet)
    assert len(decoded) == 5 and decoded[0].width == 256  # lag-in-frames 0: nothing held back


def test_codec_order_offers_the_cheaper_codec_first_or_keeps_the_browsers_choice():
    names = lambda prefs: [c.mimeType.lower() for c in prefs]  # noqa: E731
    auto = names(encoding.codec_preferences("auto", prefer_cheaper=True))
    assert auto[0] == f"video/{encoding.CHEAPER_CODEC}"
    assert {"video/vp8", "video/h264", "video/rtx"} <= set(auto)  # a viewer without it still connects
    assert encoding.codec_preferences("auto", prefer_cheaper=False) == []  # the browser's order
    assert set(names(encoding.codec_preferences("vp8", prefer_cheaper=True))) == {"video/vp8", "video/rtx"}


def test_a_still_picture_is_not_padded_to_the_bitrate_in_vp8():
    """VP8 is capped at the bitrate, not held to it: once a still face looks right its frames
    are a few bytes (and packets), and the picture is the decoded source."""
    still = next(frames(1))
    encoder, sizes = TunedVp8Encoder(EncoderSettings()), []
    for n in range(50):
        frame = av.VideoFrame.from_numpy_buffer(still.to_ndarray(), format="yuv420p")
        frame.pts, frame.time_base = n * 3600, fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=n == 0)
        sizes.append(sum(map(len, payloads)))
    assert sizes[0] > 10_000, sizes[:3]  # the keyframe carries the picture
    assert max(sizes[-10:]) < 300, sizes[-10:]  # the still face: skipped blocks


def test_sends_opus_reads_the_audio_codec_the_answer_chose():
    def answer(audio_codec: str) -> str:
        return (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
            "m=video 9 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:97 VP8/90000\r\n"
            f"m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:0 {audio_codec}\r\n"
        )

    assert encoding.sends_opus(answer("opus/48000/2").replace(" 0\r\n", " 111\r\n").replace(":0 ", ":111 "))
    assert not encoding.sends_opus(answer("PCMU/8000"))
    assert not encoding.sends_opus(answer("PCMU/8000").split("m=audio")[0])  # no audio at all
