import contextlib
import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from streamer.audio import PcmStream, decode, decode_file, from_int16, resample, to_int16
from streamer.errors import BadInput, StreamerError, TooLarge, UnsupportedMedia

RATE = 16_000
FORMATS = {
    # name: (ffmpeg arguments, content type)
    "mp3": (["-c:a", "libmp3lame", "-f", "mp3"], "audio/mpeg"),
    "ogg-vorbis": (["-c:a", "libvorbis", "-f", "ogg"], "audio/ogg"),
    "ogg-opus": (["-c:a", "libopus", "-f", "ogg"], "audio/ogg; codecs=opus"),
    "webm-opus": (["-c:a", "libopus", "-f", "webm"], "audio/webm;codecs=opus"),
    "flac": (["-c:a", "flac", "-f", "flac"], "audio/flac"),
    "m4a": (["-c:a", "aac", "-f", "ipod"], "audio/mp4"),
}

needs_tools = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("ffmpeg")), reason="needs espeak-ng and ffmpeg"
)


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("speech")
    text = b"The quick brown fox jumps over the lazy dog, twice."
    wav = str(folder / "speech.wav")
    subprocess.run(["espeak-ng", "--stdin", "-w", wav], input=text, check=True)
    for name, (args, _) in FORMATS.items():
        subprocess.run(
            [
                "ffmpeg",
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(folder / "speech.wav"),
                *args,
                str(folder / f"speech.{name}"),
            ],
            check=True,
        )
    return folder


def _aligned_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 1600) -> float:
    """Best normalised cross-correlation of a and b over lags up to ±max_lag samples."""
    n = min(len(a), len(b)) - max_lag
    best = 0.0
    ref = a[max_lag:n]
    for lag in range(-max_lag, max_lag + 1, 1):
        other = b[max_lag + lag : n + lag]
        denom = np.linalg.norm(ref) * np.linalg.norm(other)
        best = max(best, float(np.dot(ref, other) / denom) if denom else 0.0)
    return best


@needs_tools
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_compressed_formats_decode_like_the_wav(speech_dir, name):
    reference = decode_file(speech_dir / "speech.wav", RATE)
    assert reference.dtype == np.float32 and len(reference) > RATE  # over a second of speech
    data = (speech_dir / f"speech.{name}").read_bytes()
    decoded = decode(data, FORMATS[name][1], RATE, max_seconds=30)
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert np.abs(decoded).max() <= 1.0
    assert abs(len(decoded) - len(reference)) <= 0.030 * RATE
    assert _aligned_correlation(reference, decoded) > 0.8
    # a missing or generic type is probed
    assert len(decode(data, None, RATE, 30)) == len(decoded)
    assert len(decode(data, "application/octet-stream", RATE, 30)) == len(decoded)


@needs_tools
def test_decode_resamples_to_the_asked_rate(speech_dir):
    low = decode_file(speech_dir / "speech.wav", RATE)
    high = decode((speech_dir / "speech.wav").read_bytes(), "audio/wav", 48_000, 30)
    assert abs(len(high) - 3 * len(low)) <= 3
    assert _aligned_correlation(low, high[::3], max_lag=20) > 0.95


def _tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_l16_is_big_endian_and_round_trips():
    tone = _tone(0.5, RATE)
    body = to_int16(tone).astype(">i2").tobytes()
    decoded = decode(body, "audio/L16;rate=16000", RATE, 10)
    np.testing.assert_allclose(decoded, tone, atol=1e-4)
    # the same bytes read as little-endian would be noise: the byte order matters
    assert not np.allclose(decode(body, "audio/pcm;rate=16000", RATE, 10), tone, atol=0.1)


def test_l16_resamples_and_downmixes():
    tone = _tone(0.5, 8000)
    stereo = np.stack([to_int16(tone), np.zeros_like(to_int16(tone))], axis=1)
    body = stereo.astype(">i2").tobytes()
    decoded = decode(body, "audio/L16; rate=8000; channels=2", RATE, 10)
    assert len(decoded) == 2 * len(tone)
    expected = 0.5 * resample(tone, 8000, RATE)
    np.testing.assert_allclose(decoded, expected, atol=2e-3)


def test_pcm_little_endian_at_48k():
    tone = _tone(0.4, 48_000)
    decoded = decode(to_int16(tone).astype("<i2").tobytes(), "audio/pcm;rate=48000", RATE, 10)
    assert len(decoded) == len(tone) // 3
    np.testing.assert_allclose(decoded, resample(tone, 48_000, RATE), atol=1e-4)
    assert np.abs(decoded).max() == pytest.approx(0.5, abs=0.01)


def _wav_bytes(samples: np.ndarray, rate: int, channels: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(to_int16(samples).astype("<i2").tobytes())
    return buffer.getvalue()


def test_stereo_container_is_averaged():
    tone = _tone(0.5, RATE)
    interleaved = np.stack([tone, np.zeros_like(tone)], axis=1).reshape(-1)
    decoded = decode(_wav_bytes(interleaved, RATE, 2), "audio/wav", RATE, 10)
    assert len(decoded) == len(tone)
    np.testing.assert_allclose(decoded, 0.5 * tone, atol=1e-3)
    # identical full-scale channels stay within full scale
    loud = np.stack([np.sign(tone), np.sign(tone)], axis=1).reshape(-1)
    assert np.abs(decode(_wav_bytes(loud, RATE, 2), "audio/x-wav", RATE, 10)).max() <= 1.0


@pytest.mark.parametrize("content_type", ["text/plain", "image/png", "application/json"])
def test_non_audio_types_are_refused(content_type):
    with pytest.raises(UnsupportedMedia, match="audio/wav"):
        decode(_wav_bytes(_tone(0.1, RATE), RATE, 1), content_type, RATE, 10)


@pytest.mark.parametrize(
    "body, content_type, error, message",
    [
        (b"", "audio/wav", BadInput, "empty audio body"),
        (b"", None, BadInput, "empty audio body"),
        (b"this is not audio at all. " * 200, None, BadInput, "could not decode audio"),
        (b"this is not audio at all. " * 200, "audio/mpeg", BadInput, "could not decode audio"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), None, BadInput, "could not decode audio"),
        (b"\x00\x01" * 100, "audio/L16", BadInput, "rate"),
        (b"\x00\x01" * 100, "audio/L16;rate=fast", BadInput, "rate"),
        (b"\x00\x01\x02", "audio/L16;rate=16000", BadInput, "whole"),
        (b"\x00\x01" * 3, "audio/pcm;rate=16000;channels=2", BadInput, "whole"),
        (bytes(2 * 16000 * 3), "audio/L16;rate=16000", TooLarge, "limit"),
    ],
)
def test_bad_bodies(body, content_type, error, message):
    with pytest.raises(error, match=message):
        decode(body, content_type, RATE, max_seconds=2)


def test_truncated_and_too_long_containers():
    wav = _wav_bytes(_tone(3.0, RATE), RATE, 1)
    with pytest.raises(TooLarge, match="limit is 2 s"):
        decode(wav, "audio/wav", RATE, max_seconds=2)
    with pytest.raises(BadInput, match="could not decode audio"):
        decode(wav[:30], "audio/wav", RATE, max_seconds=10)
    # any failure is a StreamerError, never a PyAV exception
    rng = np.random.default_rng(1)
    for _ in range(20):
        noise = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
        with contextlib.suppress(StreamerError):
            decode(wav[:44] + noise, None, RATE, 10)


def test_decode_file_errors(tmp_path):
    with pytest.raises(BadInput, match="cannot read"):
        decode_file(tmp_path / "missing.wav", RATE)
    (tmp_path / "text.wav").write_text("hello " * 100)
    with pytest.raises(BadInput, match="could not decode audio"):
        decode_file(tmp_path / "text.wav", RATE)


def test_int16_conversions_clip():
    samples = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], np.float32)
    ints = to_int16(samples)
    assert ints.dtype == np.int16
    assert list(ints) == [-32768, -32767, 0, 16384, 32767, 32767]
    np.testing.assert_allclose(from_int16(ints), np.clip(samples, -1, 1), atol=1e-4)


@pytest.mark.parametrize("from_rate, to_rate", [(16000, 48000), (48000, 16000), (22050, 16000), (24000, 48000)])
def test_resample_length_and_content(from_rate, to_rate):
    tone = _tone(0.37, from_rate, freq=300.0)
    out = resample(tone, from_rate, to_rate)
    assert out.dtype == np.float32
    assert len(out) == round(len(tone) * to_rate / from_rate)
    expected = _tone(0.37, to_rate, freq=300.0)[: len(out)]
    middle = slice(len(out) // 10, -len(out) // 10)  # skip the filter's edges
    np.testing.assert_allclose(out[middle], expected[middle], atol=0.02)


@pytest.mark.parametrize("in_rate", [8000, 16000, 22050, 24000, 44100, 48000])
def test_pcm_stream_chunked_equals_whole_with_exact_counts(in_rate):
    units = 37
    rng = np.random.default_rng(in_rate)
    signal = 0.3 * np.sin(np.arange(units * in_rate // 25) * 2 * np.pi * 220 / in_rate)
    signal = (signal + 0.05 * rng.standard_normal(len(signal))).astype(np.float32)
    body = to_int16(signal).astype("<i2").tobytes()

    stream = PcmStream(in_rate)
    parts: dict[int, list[np.ndarray]] = {16000: [], 48000: []}
    position = 0
    while position < len(body):
        size = int(rng.integers(1, 999))  # odd sizes split samples between chunks
        out = stream.push(body[position : position + size])
        position += size
        for rate, samples in out.items():
            assert samples.dtype == np.float32
            parts[rate].append(samples)
    for rate, samples in stream.flush().items():
        parts[rate].append(samples)
    chunked = {rate: np.concatenate(p) for rate, p in parts.items()}

    assert len(chunked[16000]) == units * 640
    assert len(chunked[48000]) == units * 1920 == 3 * len(chunked[16000])
    whole = from_int16(np.frombuffer(body, "<i2"))
    for rate in (16000, 48000):
        np.testing.assert_allclose(chunked[rate], resample(whole, in_rate, rate), atol=1e-3)


def test_pcm_stream_keeps_a_split_sample():
    value = np.array([12345], "<i2").tobytes()
    stream = PcmStream(16000, rates=(16000,))
    assert len(stream.push(value[:1])[16000]) == 0
    out = stream.push(value[1:])[16000]
    np.testing.assert_allclose(out, [12345 / 32768], atol=1e-6)
    assert len(stream.flush()[16000]) == 0
