"""Video encode cost per 512×512 session on one CPU core, our encoder settings against aiortc's.

    python bench/encoder.py [--frames 200] [--warmup 25] [--seconds 4] [--no-sweep]

Frames are realistic: the `astronaut` template with lite crops rendered from espeak-ng speech
(the mouth moves), composited and converted to yuv420p as the media pump does. Per config
(aiortc's stock H264Encoder = x264 `medium`, our TunedH264Encoder = `superfast`, stock
Vp8Encoder, our ClampedVp8Encoder), on one pinned core: encode ms/frame (CPU time of the
process; wall time beside it, which other load on the machine inflates), sessions per core =
floor(40 ms / (encode + compose + convert)) in CPU time, then K = that many sessions encoded round-robin
in real time, counting frames that finished after their 40 ms slot, and K - 1, K - 2, … until
no frame misses (`sustained_sessions_no_stall`; `met` needs ≥ 4 of ours). The REMB check moves the
target bitrate by ±8 % and ±30 % (and back) and counts encoder rebuilds (the codec context
object changing): aiortc rebuilds past 10 %, ours must never.

Every config, and each of the `SWEEP` (VP8 cpu-used / threads / static-thresh, x264 presets,
NVENC when present), also reports at the same 1.5 Mbit/s target and 25 fps: encode ms per
speaking frame and per idle frame (the still template repeated), the bitrate it actually sent,
and the quality of what a viewer decodes (PSNR and SSIM of the luma against the source), so
defaults are chosen at equal quality, never by sending less. Frames come from the I420
compositor, as the media pump makes them.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import fractions
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder

import _checkout  # noqa: F401
from bench.common import lite_template, machine, one_core, speech16k
from bench.encoder_quality import quality
from streamer.avatar.prepared import PreparedTemplate
from streamer.render.base import RenderJob
from streamer.render.lite import LiteRenderer, openings
from streamer.units import FPS, MODEL_SAMPLES_PER_UNIT
from streamer.video.compositor import compose_i420
from streamer.webrtc.encoding import EncoderSettings, TunedH264Encoder, TunedVp8Encoder, nvenc_available

SLOT_MS = 1000.0 / FPS
TARGET_SESSIONS = 4
VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
REMB_STEPS = (0.08, -0.08, 0.30, -0.30)
"""Relative bitrate moves; after each the target goes back to where it started."""

CONFIGS: dict[str, Callable[[], Encoder]] = {
    "h264_stock_medium": H264Encoder,
    "h264_ours_superfast": lambda: TunedH264Encoder(EncoderSettings(h264_codec="libx264", x264_preset="superfast")),
    "vp8_stock": Vp8Encoder,
    "vp8_ours_clamped": lambda: TunedVp8Encoder(EncoderSettings()),
}
SWEEP: dict[str, Callable[[], Encoder]] = {
    **{
        f"vp8_cpu{cpu}_static{static}": (
            lambda cpu=cpu, static=static: TunedVp8Encoder(EncoderSettings(vp8_cpu_used=cpu, vp8_static_thresh=static))
        )
        for cpu, static in ((-6, 1), (8, 100), (12, 1), (12, 100), (16, 100))
    },
    "h264_ours_ultrafast": lambda: TunedH264Encoder(EncoderSettings(h264_codec="libx264", x264_preset="ultrafast")),
    "h264_ours_superfast_threads_auto": lambda: TunedH264Encoder(EncoderSettings(x264_preset="superfast", threads=0)),
    "h264_ours_veryfast": lambda: TunedH264Encoder(EncoderSettings(h264_codec="libx264", x264_preset="veryfast")),
}
if nvenc_available():
    SWEEP["h264_nvenc"] = lambda: TunedH264Encoder(EncoderSettings(h264_codec="h264_nvenc"))


def _crops(template: PreparedTemplate, audio: np.ndarray) -> np.ndarray:
    units = len(audio) // MODEL_SAMPLES_PER_UNIT
    job = RenderJob(template.id, np.arange(units, dtype=np.int64), audio, first_unit=0, final=True)
    return LiteRenderer().render(template, job)


def _video_frame(template: PreparedTemplate, crop: np.ndarray, n: int) -> av.VideoFrame:
    """What the media pump hands aiortc: the composed I420 frame with a 90 kHz pts."""
    frame = av.VideoFrame.from_numpy_buffer(compose_i420(template, n, crop), format="yuv420p")
    frame.pts = n * (90_000 // FPS)
    frame.time_base = VIDEO_TIME_BASE
    return frame


def _timed(work: Callable[[int], object], count: int) -> tuple[float, float]:
    """(wall ms, CPU ms of this process's threads) per call of `work(0 … count - 1)`.

    CPU time is what the work costs the core; wall time also holds whatever other processes
    on the machine took from the core meanwhile.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    for n in range(count):
        work(n)
    return (time.perf_counter() - wall) * 1000 / count, (time.process_time() - cpu) * 1000 / count


def _encode_ms(make: Callable[[], Encoder], frames: list[av.VideoFrame], warmup: int) -> tuple[float, float]:
    encoder = make()
    for frame in frames[:warmup]:
        encoder.encode(frame)
    timed = frames[warmup:]
    return _timed(lambda n: encoder.encode(timed[n]), len(timed))


def _real_time(
    make: Callable[[], Encoder], template: PreparedTemplate, crops: np.ndarray, sessions: int, seconds: float
) -> dict[str, Any]:
    """`sessions` encoders fed round-robin, one frame each per 40 ms tick; frames past their slot."""
    encoders = [make() for _ in range(sessions)]
    for k, encoder in enumerate(encoders):  # open each codec (and its keyframe) before the clock starts
        encoder.encode(_video_frame(template, crops[k % len(crops)], 0))
    ticks = max(1, int(seconds * FPS))
    missed = 0
    worst_ms = 0.0
    cpu = time.process_time()
    start = time.perf_counter()
    for n in range(1, ticks + 1):
        deadline = start + n * SLOT_MS / 1000
        for k, encoder in enumerate(encoders):
            encoder.encode(_video_frame(template, crops[(n + 7 * k) % len(crops)], n))
            late = time.perf_counter() - deadline
            worst_ms = max(worst_ms, late * 1000)
            missed += late > 0
        pause = deadline - time.perf_counter()
        if pause > 0:
            time.sleep(pause)  # pacing to the next 40 ms tick
    return {
        "sessions": sessions,
        "seconds": round(ticks / FPS, 2),
        "frames": ticks * sessions,
        "missed_slots": int(missed),
        "worst_lateness_ms": round(max(worst_ms, 0.0), 1),
        "cpu_busy_fraction": round((time.process_time() - cpu) / (time.perf_counter() - start), 2),
        "stall_free": missed == 0,
    }


def _sustained(
    make: Callable[[], Encoder], template: PreparedTemplate, crops: np.ndarray, computed: int, seconds: float
) -> tuple[int, list[dict[str, Any]]]:
    """The real-time check at `computed` sessions, then one fewer at a time until none miss a slot."""
    checks = []
    for sessions in range(computed, 0, -1):
        checks.append(_real_time(make, template, crops, sessions, seconds))
        if checks[-1]["stall_free"]:
            return sessions, checks
    return 0, checks


def _costs(
    make: Callable[[], Encoder], frames: list[av.VideoFrame], idle: list[av.VideoFrame], warmup: int
) -> dict[str, Any]:
    """Encode ms per speaking and per idle frame (CPU time, wall beside it) and the quality."""
    speak_wall, speak_cpu = _encode_ms(make, frames, warmup)
    _, idle_cpu = _encode_ms(make, idle, warmup)
    return {
        "encode_ms_per_frame": round(speak_cpu, 2),
        "encode_wall_ms_per_frame": round(speak_wall, 2),
        "idle_encode_ms_per_frame": round(idle_cpu, 2),
        **quality(make, frames[warmup:]),
    }


def _remb(make: Callable[[], Encoder], frame_source: Callable[[int], av.VideoFrame]) -> dict[str, Any]:
    """Encoder rebuilds when the target bitrate moves by each step of REMB_STEPS and back."""
    encoder = make()
    n = 0

    def encode_two() -> None:
        nonlocal n
        for _ in range(2):
            encoder.encode(frame_source(n))
            n += 1

    encode_two()
    base = encoder.target_bitrate
    out: dict[str, Any] = {"base_bitrate": base}
    for step in REMB_STEPS:
        rebuilds = 0
        for target in (int(base * (1 + step)), base):
            before = encoder.codec
            encoder.target_bitrate = target
            encode_two()
            rebuilds += encoder.codec is not before
        out[f"rebuilds_{step * 100:+.0f}%"] = rebuilds
    out["rebuilds_total"] = sum(v for k, v in out.items() if k.startswith("rebuilds_"))
    return out


def _config(
    make: Callable[[], Encoder],
    template: PreparedTemplate,
    crops: np.ndarray,
    speaking_idle: tuple[list[av.VideoFrame], list[av.VideoFrame]],
    compose: tuple[float, float],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One config's figures: costs and quality, sessions per core (computed, then checked in real
    time), and its encoder rebuilds under REMB moves. `compose` is (CPU, wall) ms per frame."""
    frames, idle = speaking_idle
    compose_cpu, compose_wall = compose
    costs = _costs(make, frames, idle, args.warmup)
    encode_cpu, encode_wall = costs["encode_ms_per_frame"], costs["encode_wall_ms_per_frame"]
    per_core = int(SLOT_MS // (encode_cpu + compose_cpu))
    sustained, checks = _sustained(make, template, crops, per_core, args.seconds)
    return {
        **costs,
        "total_ms_per_frame": round(encode_cpu + compose_cpu, 2),
        "sessions_per_core": per_core,
        "sessions_per_core_wall": int(SLOT_MS // (encode_wall + compose_wall)),
        "real_time_at_computed": checks[0] if checks else None,
        "sustained_sessions_no_stall": sustained,
        "real_time_checks": [{"sessions": c["sessions"], "missed_slots": c["missed_slots"]} for c in checks],
        "remb": _remb(make, lambda n: _video_frame(template, crops[n % len(crops)], n)),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="timed frames per config")
    parser.add_argument("--warmup", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=3.0, help="real-time check per config")
    parser.add_argument("--no-sweep", action="store_true", help="skip the settings sweep")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-encoder-") as tmp:
        work = Path(tmp)
        template = lite_template(work)
        speech = speech16k(work, lines=4)
        crops = _crops(template, speech)
    with one_core() as core:
        compose_wall, compose_cpu = _timed(
            lambda n: _video_frame(template, crops[n % len(crops)], n), max(args.frames, 20)
        )
        _, idle_cpu = _timed(lambda n: _video_frame(template, None, n), max(args.frames, 20))
        frames = [_video_frame(template, crops[n % len(crops)], n) for n in range(args.warmup + args.frames)]
        idle = [_video_frame(template, None, n) for n in range(args.warmup + args.frames)]
        compose = (compose_cpu, compose_wall)
        configs = {
            name: _config(make, template, crops, (frames, idle), compose, args) for name, make in CONFIGS.items()
        }
        sweep = {} if args.no_sweep else {name: _costs(make, frames, idle, args.warmup) for name, make in SWEEP.items()}
    ours = configs["h264_ours_superfast"]
    size = frames[0].width, frames[0].height
    return {
        "bench": "encoder",
        "machine": machine(),
        "pinned_core": core,
        "frame_size": list(size),
        "fps": FPS,
        "frames_timed": args.frames,
        "moving_mouth_frames": f"{int(np.count_nonzero(openings(speech, 0, len(crops))))} of {len(crops)}",
        "compose_convert_ms_per_frame": round(compose_cpu, 2),
        "compose_convert_wall_ms_per_frame": round(compose_wall, 2),
        "idle_frame_ms": round(idle_cpu, 3),
        "configs": configs,
        "sweep": sweep,
        "speedup_h264_ours_vs_stock": round(
            configs["h264_stock_medium"]["encode_ms_per_frame"] / ours["encode_ms_per_frame"], 2
        ),
        "target_sessions_per_core": TARGET_SESSIONS,
        "met": bool(
            ours["sessions_per_core"] >= TARGET_SESSIONS
            and ours["sustained_sessions_no_stall"] >= TARGET_SESSIONS
            and ours["remb"]["rebuilds_total"] == 0
        ),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
