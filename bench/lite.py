"""Speed of the embedded lite renderer on one core, through the render pool, and of compose.

    python bench/lite.py [--repeats 20]

Figures: lite render ms/frame, frames/s and × real time on one pinned core for 5- and 25-unit
windows of espeak-ng speech; the LocalPool round trip with one CPU worker (ms per 5- and
25-unit window, pipe and process hop included); compose ms/frame.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import _checkout  # noqa: F401
from bench.common import TEMPLATE, lite_template, machine, one_core, speech16k, summary, template_dir
from streamer.avatar.prepared import PreparedTemplate
from streamer.config import Settings
from streamer.pool.front.local import LocalPool
from streamer.render.base import RenderJob
from streamer.render.lite import LiteRenderer
from streamer.units import FPS, MODEL_SAMPLES_PER_UNIT
from streamer.video.compositor import compose

WINDOWS = (5, 25)


def _jobs(audio: np.ndarray, window: int, repeats: int) -> list[RenderJob]:
    """`repeats` consecutive windows of the speech, wrapping round; audio up to each window's end."""
    units = len(audio) // MODEL_SAMPLES_PER_UNIT
    jobs = []
    for r in range(repeats):
        first = (r * window) % max(units - window, 1)
        clip = audio[: (first + window) * MODEL_SAMPLES_PER_UNIT]
        jobs.append(RenderJob(TEMPLATE, np.arange(first, first + window, dtype=np.int64), clip, first, final=False))
    return jobs


def _render_speed(template: PreparedTemplate, audio: np.ndarray, repeats: int) -> dict[str, Any]:
    renderer = LiteRenderer()
    out: dict[str, Any] = {}
    for window in WINDOWS:
        jobs = _jobs(audio, window, repeats)
        renderer.render(template, jobs[0])  # warm-up
        started = time.perf_counter()
        for job in jobs:
            renderer.render(template, job)
        seconds = time.perf_counter() - started
        frames = window * len(jobs)
        out[f"window_{window}"] = {
            "ms_per_frame": round(seconds * 1000 / frames, 2),
            "frames_per_s": round(frames / seconds, 1),
            "x_real_time": round(frames / FPS / seconds, 1),
        }
    return out


def _compose_ms(template: PreparedTemplate, audio: np.ndarray, repeats: int) -> float:
    crops = LiteRenderer().render(template, _jobs(audio, 25, 1)[0])
    frames = max(repeats * 5, 25)
    started = time.perf_counter()
    for n in range(frames):
        compose(template, n, crops[n % len(crops)])
    return (time.perf_counter() - started) * 1000 / frames


async def _pool_round_trip(work: Path, audio: np.ndarray, repeats: int) -> dict[str, Any]:
    settings = Settings(templates_dir=template_dir(work / "templates"), cache_dir=work / "cache", renderer="lite")
    pool = LocalPool(settings, ["cpu"])
    started = time.perf_counter()
    await pool.start()
    await pool.prepare(TEMPLATE)
    out: dict[str, Any] = {"start_and_prepare_s": round(time.perf_counter() - started, 2)}
    try:
        for window in WINDOWS:
            jobs = _jobs(audio, window, repeats)
            await pool.render(jobs[0])  # warm-up
            times = []
            for job in jobs:
                t = time.perf_counter()
                crops = await pool.render(job)
                times.append((time.perf_counter() - t) * 1000)
                assert crops.shape[0] == window
            out[f"window_{window}_ms"] = summary(times)
    finally:
        await pool.close()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="windows timed per size")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-lite-") as tmp:
        work = Path(tmp)
        template = lite_template(work)
        audio = speech16k(work, lines=4)
        with one_core() as core:
            render = _render_speed(template, audio, args.repeats)
            compose_ms = _compose_ms(template, audio, args.repeats)
        pool = asyncio.run(_pool_round_trip(work / "pool", audio, args.repeats))
    return {
        "bench": "lite",
        "machine": machine(),
        "pinned_core": core,
        "speech_seconds": round(len(audio) / 16000, 2),
        "render_one_core": render,
        "compose_ms_per_frame": round(compose_ms, 2),
        "pool_round_trip_one_cpu_worker": pool,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
