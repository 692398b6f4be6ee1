"""MuseTalk renderer throughput, latency and scaling on random weights; prints one JSON object.

    python bench/musetalk.py [--tiny | --full] [--devices cuda:0,cuda:1] [--batches 8,16,32,64]

--tiny (default): tiny random weights, meant for the CPU (well under 2 minutes on 2 cores).
--full: random weights of the real sizes (UNet 850 M parameters, SD VAE): for a GPU machine.
Figures: frames/s per device, batch size and precision (CUDA: `fp16` = today's default, UNet
fp16 + VAE fp32; `fp16-everything` = the official realtime script's, whisper, VAE and positional
encoding in fp16 too; `fp32`); the max / mean pixel difference of fp16-everything against
today's; time to the first frame of a 5-unit streaming window (whisper features of the utterance
so far + UNet + VAE); peak GPU memory; 1 → N devices (one process per device, same audio); and
streamed-feature fidelity: the cosine distance of streamed to whole-file features of the same
audio beside the distance between whole-file features of two different sentences (the first
must be far smaller, or the similarity says nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import _checkout  # noqa: F401
from bench.common import machine, speech16k
from streamer.avatar.prepared import PreparedTemplate
from streamer.config import Settings
from streamer.render.base import RenderJob
from streamer.render.musetalk import MuseTalkRenderer
from tests.support.tiny_musetalk import build_tiny_models, speech_like

FIRST_WINDOW = 5
LOOKAHEAD = 2
SAMPLES_PER_UNIT = 640


PRECISIONS = {"fp16": {"fp16": True}, "fp16-everything": {"fp16": True, "realtime_fp16": True}, "fp32": {"fp16": False}}


def _renderer(models: Path, device: str, batch: int, precision: str) -> MuseTalkRenderer:
    settings = dataclasses.replace(Settings(), batch_size=batch, **PRECISIONS[precision])
    return MuseTalkRenderer(models, device, settings)


def _template(renderer: MuseTalkRenderer, frames: int = 8) -> PreparedTemplate:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (frames, 320, 320, 3), dtype=np.uint8)
    boxes = np.array([[40, 40, 280, 300]] * frames, dtype=np.int32)
    bare = PreparedTemplate(
        id="bench",
        name="bench",
        kind="video",
        frames=images,
        face_boxes=boxes,
        mouth=np.zeros((frames, 2), np.float32),
        blend_boxes=boxes,
        blend_masks=np.zeros((frames, 256, 256), np.uint8),
        renderer="musetalk",
        welcome=None,
    )
    return dataclasses.replace(bare, extras=renderer.prepare(bare).extras)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _throughput(
    renderer: MuseTalkRenderer, template: PreparedTemplate, device: str, audio: np.ndarray, frames: int
) -> float:
    """Frames/s of UNet + VAE (the features of `audio` are cached by a warm-up render: a full
    batch on CUDA, so kernels for that shape are chosen; 2 frames on the CPU)."""
    job = RenderJob("bench", np.arange(frames, dtype=np.int64), audio, 0, True)
    warm = renderer.batch_size if device.startswith("cuda") else 2
    renderer.render(template, dataclasses.replace(job, positions=job.positions[:warm]))
    _sync(device)
    start = time.perf_counter()
    renderer.render(template, job)
    _sync(device)
    return frames / (time.perf_counter() - start)


def _first_frame(renderer: MuseTalkRenderer, template: PreparedTemplate, device: str) -> float:
    """Seconds to render the first 5-unit window of a streaming utterance, features included."""
    audio = speech_like((FIRST_WINDOW + LOOKAHEAD) * SAMPLES_PER_UNIT / 16_000, seed=7)
    job = RenderJob("bench", np.arange(FIRST_WINDOW, dtype=np.int64), audio, 0, False)
    renderer.features._cache.clear()
    _sync(device)
    start = time.perf_counter()
    renderer.render(template, job)
    _sync(device)
    return time.perf_counter() - start


def _feature_fidelity(renderer: MuseTalkRenderer, audio: np.ndarray, other: np.ndarray) -> dict:
    """Streamed vs whole-file features of `audio`, and whole-file features of `audio` vs `other`."""
    frames = min(len(audio), len(other)) // SAMPLES_PER_UNIT
    whole = renderer.features.windows(audio, 0, frames)
    parts, start, size = [], 0, FIRST_WINDOW
    while start < frames:
        stop = min(frames, start + size)
        head = audio[: (stop + LOOKAHEAD) * SAMPLES_PER_UNIT]
        parts.append(renderer.features.windows(head, start, stop - start, final=False))
        start, size = stop, 25
    cosine = torch.nn.functional.cosine_similarity(torch.cat(parts).flatten(1), whole.flatten(1), dim=1)
    different = torch.nn.functional.cosine_similarity(
        renderer.features.windows(other, 0, frames).flatten(1), whole.flatten(1), dim=1
    )
    same, apart = (1 - cosine).mean().item(), (1 - different).mean().item()
    return {
        "streamed_cosine": round(cosine.mean().item(), 6),
        "streamed_vs_whole_same_audio_distance": round(same, 6),
        "whole_vs_whole_different_audio_distance": round(apart, 6),
        "ratio": round(apart / max(same, 1e-12), 1),
    }


def _precision_difference(models: Path, device: str, audio: np.ndarray, frames: int) -> dict:
    """Max and mean |pixel| difference of fp16-everything against today's precision."""
    crops = {}
    for precision in ("fp16", "fp16-everything"):
        renderer = _renderer(models, device, frames, precision)
        template = _template(renderer)
        job = RenderJob("bench", np.arange(frames, dtype=np.int64), audio, 0, True)
        crops[precision] = renderer.render(template, job).astype(np.int16)
        del renderer
        torch.cuda.empty_cache()
    diff = np.abs(crops["fp16"] - crops["fp16-everything"])
    return {"max": int(diff.max()), "mean": round(float(diff.mean()), 4)}


def _scaling_worker(models: str, device: str, batch: int, precision: str, frames: int, barrier, queue) -> None:
    renderer = _renderer(Path(models), device, batch, precision)
    template = _template(renderer)
    audio = speech_like(frames / 25 + 0.2, seed=3)
    job = RenderJob("bench", np.arange(frames, dtype=np.int64), audio, 0, True)
    warm = batch if device.startswith("cuda") else 2
    renderer.render(template, dataclasses.replace(job, positions=job.positions[:warm]))
    _sync(device)
    barrier.wait()
    start = time.time()
    renderer.render(template, job)
    _sync(device)
    queue.put((start, time.time()))


def _scaling(models: Path, devices: list[str], batch: int, precision: str, frames: int) -> dict:
    """Aggregate frames/s with 1 and with all `devices`, one process each, the same audio."""
    ctx = mp.get_context("spawn")
    out = {}
    for used in sorted({1, len(devices)}):
        barrier, queue = ctx.Barrier(used), ctx.Queue()
        procs = [
            ctx.Process(target=_scaling_worker, args=(str(models), d, batch, precision, frames, barrier, queue))
            for d in devices[:used]
        ]
        for p in procs:
            p.start()
        spans = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        wall = max(e for _, e in spans) - min(s for s, _ in spans)
        out[str(used)] = round(used * frames / wall, 2)
    speedup = out[str(len(devices))] / out["1"]
    return {"devices": devices, "fps_by_processes": out, "speedup": round(speedup, 2)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_true", help="tiny random weights (default)")
    size.add_argument("--full", action="store_true", help="random weights of the real sizes")
    parser.add_argument("--models", type=Path, help="use this weights folder instead of random ones")
    parser.add_argument("--devices", help="comma-separated (default: every CUDA device, else cpu)")
    parser.add_argument("--batches", default="8,16,32,64")
    parser.add_argument("--frames", type=int, help="frames per throughput run (default: 2 batches on CUDA, 1 on CPU)")
    return parser


def _devices(given: str | None) -> list[str]:
    """`given` (comma-separated), else every CUDA device, else the CPU."""
    if given:
        return [d.strip() for d in given.split(",") if d.strip()]
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    devices = _devices(args.devices)
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models or build_tiny_models(Path(tmp) / "models", full=args.full)
        audio = speech_like(max(batches) * 2 / 25 + 1, seed=1)
        if shutil.which("espeak-ng"):
            speech, speech_source = speech16k(Path(tmp), lines=4), "espeak-ng"
        else:
            speech, speech_source = speech_like(6.0, seed=2), "synthetic"
        other = speech_like(len(speech) / 16_000, seed=5)
        results, first_frame, memory = [], {}, {}
        fidelity = None
        for device in devices:
            cuda = device.startswith("cuda")
            for dtype in list(PRECISIONS) if cuda else ["fp32"]:
                renderer = _renderer(models, device, batches[0], dtype)
                template = _template(renderer)
                for batch in batches:
                    renderer.batch_size = batch
                    if cuda:
                        torch.cuda.reset_peak_memory_stats(device)
                    frames = args.frames or (2 * batch if cuda else batch)
                    fps = _throughput(renderer, template, device, audio, frames)
                    results.append(
                        {"device": device, "dtype": dtype, "batch": batch, "frames": frames, "fps": round(fps, 2)}
                    )
                    if cuda:
                        memory[f"{device} {dtype} b{batch}"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                renderer.batch_size = FIRST_WINDOW
                _first_frame(renderer, template, device)  # warm-up
                first_frame[f"{device} {dtype}"] = round(
                    min(_first_frame(renderer, template, device) for _ in range(2)), 4
                )
                if fidelity is None:
                    fidelity = _feature_fidelity(renderer, speech, other)
                del renderer
                if cuda:
                    torch.cuda.empty_cache()
        scale_batch = max(batches) if devices[0].startswith("cuda") else min(batches)
        scale_frames = args.frames or (4 * scale_batch if devices[0].startswith("cuda") else scale_batch)
        cuda = devices[0].startswith("cuda")
        scaling = _scaling(models, devices, scale_batch, "fp16" if cuda else "fp32", scale_frames)
        difference = _precision_difference(models, devices[0], audio, batches[0]) if cuda else None
    return {
        "machine": machine(),
        "weights": "given" if args.models else ("full-size random" if args.full else "tiny random"),
        "throughput": results,
        "first_window_s": first_frame,
        "first_window_units": FIRST_WINDOW,
        "gpu_peak_memory_mib": memory,
        "scaling": scaling,
        "fp16_everything_vs_fp16_pixels": difference,
        "streamed_features": fidelity,
        "streaming_audio": f"{speech_source}, {len(speech) / 16_000:.1f} s",
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
