"""MuseTalk renderer throughput, latency and scaling on random weights; prints one JSON object.

    python bench/musetalk.py [--tiny | --full] [--devices cuda:0,cuda:1] [--batches 8,16,32,64]

--tiny (default): tiny random weights, meant for the CPU (well under 2 minutes on 2 cores).
--full: random weights of the real sizes (UNet 850 M parameters, SD VAE): for a GPU machine.
Figures: frames/s per device, batch size and UNet dtype (fp16 only on CUDA); time to the first
frame of a 5-unit streaming window (whisper features of the utterance so far + UNet + VAE);
peak GPU memory; 1 → N devices (one process per device, same audio); the mean cosine
similarity of streamed features to the whole file's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import machine, speech16k  # noqa: E402
from streamer.avatar.prepared import PreparedTemplate  # noqa: E402
from streamer.config import Settings  # noqa: E402
from streamer.render.base import RenderJob  # noqa: E402
from streamer.render.musetalk import MuseTalkRenderer  # noqa: E402
from streamer.render.musetalk.tiny import build_tiny_models, speech_like  # noqa: E402

FIRST_WINDOW = 5
LOOKAHEAD = 2
SAMPLES_PER_UNIT = 640


def _renderer(models: Path, device: str, batch: int, fp16: bool) -> MuseTalkRenderer:
    return MuseTalkRenderer(models, device, dataclasses.replace(Settings(), batch_size=batch, fp16=fp16))


def _template(renderer: MuseTalkRenderer, frames: int = 8) -> PreparedTemplate:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (frames, 320, 320, 3), dtype=np.uint8)
    boxes = np.array([[40, 40, 280, 300]] * frames, dtype=np.int32)
    bare = PreparedTemplate(
        id="bench", name="bench", kind="video", frames=images, face_boxes=boxes,
        mouth=np.zeros((frames, 2), np.float32), blend_boxes=boxes,
        blend_masks=np.zeros((frames, 256, 256), np.uint8), renderer="musetalk", welcome=None,
    )
    return dataclasses.replace(bare, extras=renderer.prepare(bare))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _throughput(renderer: MuseTalkRenderer, template: PreparedTemplate, device: str,
                audio: np.ndarray, frames: int) -> float:
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
    renderer.features._cache.clear()  # noqa: SLF001 - a cold utterance
    _sync(device)
    start = time.perf_counter()
    renderer.render(template, job)
    _sync(device)
    return time.perf_counter() - start


def _streaming_cosine(renderer: MuseTalkRenderer, audio: np.ndarray) -> float:
    frames = len(audio) // SAMPLES_PER_UNIT
    whole = renderer.features.windows(audio, 0, frames)
    sims, start, size = [], 0, FIRST_WINDOW
    while start < frames:
        stop = min(frames, start + size)
        part = renderer.features.windows(audio[: (stop + LOOKAHEAD) * SAMPLES_PER_UNIT], start, stop - start)
        sims.append(torch.nn.functional.cosine_similarity(part.flatten(1), whole[start:stop].flatten(1), dim=1))
        start, size = stop, 25
    return round(torch.cat(sims).mean().item(), 6)


def _scaling_worker(models: str, device: str, batch: int, fp16: bool, frames: int, barrier, queue) -> None:
    renderer = _renderer(Path(models), device, batch, fp16)
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


def _scaling(models: Path, devices: list[str], batch: int, fp16: bool, frames: int) -> dict:
    """Aggregate frames/s with 1 and with all `devices`, one process each, the same audio."""
    ctx = mp.get_context("spawn")
    out = {}
    for used in sorted({1, len(devices)}):
        barrier, queue = ctx.Barrier(used), ctx.Queue()
        procs = [ctx.Process(target=_scaling_worker,
                             args=(str(models), d, batch, fp16, frames, barrier, queue))
                 for d in devices[:used]]
        for p in procs:
            p.start()
        spans = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        wall = max(e for _, e in spans) - min(s for s, _ in spans)
        out[str(used)] = round(used * frames / wall, 2)
    speedup = out[str(len(devices))] / out["1"]
    return {"devices": devices, "fps_by_processes": out, "speedup": round(speedup, 2)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_true", help="tiny random weights (default)")
    size.add_argument("--full", action="store_true", help="random weights of the real sizes")
    parser.add_argument("--models", type=Path, help="use this weights folder instead of random ones")
    parser.add_argument("--devices", help="comma-separated (default: every CUDA device, else cpu)")
    parser.add_argument("--batches", default="8,16,32,64")
    parser.add_argument("--frames", type=int, help="frames per throughput run (default: 2 batches on CUDA, 1 on CPU)")
    args = parser.parse_args(argv)

    if args.devices:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    elif torch.cuda.is_available():
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        devices = ["cpu"]
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models or build_tiny_models(Path(tmp) / "models", full=args.full)
        audio = speech_like(max(batches) * 2 / 25 + 1, seed=1)
        if shutil.which("espeak-ng"):
            speech, speech_source = speech16k(Path(tmp), lines=4), "espeak-ng"
        else:
            speech, speech_source = speech_like(6.0, seed=2), "synthetic"
        results, first_frame, memory = [], {}, {}
        cosine = None
        for device in devices:
            cuda = device.startswith("cuda")
            for fp16 in ([True, False] if cuda else [False]):
                dtype = "fp16" if fp16 else "fp32"
                renderer = _renderer(models, device, batches[0], fp16)
                template = _template(renderer)
                for batch in batches:
                    renderer.batch_size = batch
                    if cuda:
                        torch.cuda.reset_peak_memory_stats(device)
                    frames = args.frames or (2 * batch if cuda else batch)
                    fps = _throughput(renderer, template, device, audio, frames)
                    results.append({"device": device, "dtype": dtype, "batch": batch,
                                    "frames": frames, "fps": round(fps, 2)})
                    if cuda:
                        memory[f"{device} {dtype} b{batch}"] = round(
                            torch.cuda.max_memory_allocated(device) / 2**20, 1)
                renderer.batch_size = FIRST_WINDOW
                _first_frame(renderer, template, device)  # warm-up
                first_frame[f"{device} {dtype}"] = round(
                    min(_first_frame(renderer, template, device) for _ in range(2)), 4)
                if cosine is None:
                    cosine = _streaming_cosine(renderer, speech)
                del renderer
                if cuda:
                    torch.cuda.empty_cache()
        scale_batch = max(batches) if devices[0].startswith("cuda") else min(batches)
        scale_frames = args.frames or (4 * scale_batch if devices[0].startswith("cuda") else scale_batch)
        scaling = _scaling(models, devices, scale_batch, devices[0].startswith("cuda"), scale_frames)
    return {
        "machine": machine(),
        "weights": "given" if args.models else ("full-size random" if args.full else "tiny random"),
        "throughput": results,
        "first_window_s": first_frame,
        "first_window_units": FIRST_WINDOW,
        "gpu_peak_memory_mib": memory,
        "scaling": scaling,
        "streaming_feature_cosine": cosine,
        "streaming_audio": f"{speech_source}, {len(speech) / 16_000:.1f} s",
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
