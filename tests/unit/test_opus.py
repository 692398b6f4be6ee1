"""Lean Opus: mono 20 ms packets a decoder plays, digital silence from a cache, the same audio
levels as aiortc's."""

import fractions

import av
import numpy as np

from streamer.webrtc.encoding import _aiortc_audio_level
from streamer.webrtc.opus import SETTLE_FRAMES, LeanOpusEncoder, audio_level_dbov


def frame(samples: np.ndarray, n: int) -> av.AudioFrame:
    out = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
    out.sample_rate, out.pts, out.time_base = (
        48000,
        n * 960,
        fractions.Fraction(1, 48000),
    )
    return out


def test_speech_then_silence_decodes_to_what_was_sent_one_packet_per_frame():
    t = np.arange(960 * 20) / 48000
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    audio = np.concatenate([tone, np.zeros(960 * 30, np.int16)])
    encoder = LeanOpusEncoder()
    decoder = av.CodecContext.create("opus", "r")
    out, stamps = [], []
    for n in range(len(audio) // 960):
        payloads, timestamp = encoder.encode(frame(audio[n * 960 : (n + 1) * 960], n))
        assert len(payloads) == 1 and 1 <= len(payloads[0]) < 1200  # one RTP packet each
        stamps.append(timestamp)
        for decoded in decoder.decode(av.Packet(payloads[0])):
            out.append(decoded.to_ndarray()[0] * 32768)  # float planar, channel 0
    assert stamps == [n * 960 for n in range(50)]
    pcm = np.concatenate(out).astype(np.float64)
    assert len(pcm) == len(audio)

    def level(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))

    assert 0.8 < level(pcm[960 * 4 : 960 * 16]) / level(tone[960 * 4 : 960 * 16]) < 1.2  # the tone
    assert level(pcm[960 * 30 :]) < 5  # the silence stays silent
    assert encoder.reused == 30 - SETTLE_FRAMES  # after settling, silence costs no encoding


def test_audio_level_matches_aiortcs_own():
    rng = np.random.default_rng(1)
    for scale in (0, 1, 30, 3000, 32767):
        samples = np.clip(rng.normal(0, scale, 960), -32768, 32767).astype(np.int16)
        f = frame(samples, 0)
        assert audio_level_dbov(f) == _aiortc_audio_level(f), scale
