"""Memory a cached template costs a process that composes every frame; prints one JSON object.

    python bench/template_memory.py [--frames 250] [--width 1920 --height 1080]

A synthetic template of that size is saved with `avatar.cache.save`; then a fresh process loads
it (`frames` memory-mapped from the cache) and composes every loop position, first alone and
then beside a second process that maps the same cache (as the web process and a worker do).
Reported: unique memory (USS), anonymous memory (RssAnon, what no other process can share) and
RSS, in MiB, after loading and after composing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
from pathlib import Path

import numpy as np
import psutil

import _checkout  # noqa: F401
from bench.common import machine
from streamer.avatar import cache
from streamer.avatar.prepared import PreparedTemplate
from streamer.video.compositor import compose

KEY = {"renderer": "bench"}


def _anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _figures() -> dict[str, float]:
    info = psutil.Process().memory_full_info()
    return {
        "uss_mib": round(info.uss / 2**20, 1),
        "anon_mib": round(_anon_mib(), 1),
        "rss_mib": round(info.rss / 2**20, 1),
    }


def _compose_all(folder: str, ready, done, out) -> None:
    before = _figures()
    t = cache.load(Path(folder), "big", None, "0" * 64, KEY)
    assert t is not None
    loaded = _figures()
    crop = np.full((256, 256, 3), 128, np.uint8)
    for position in range(2 * t.frame_count - 2):
        compose(t, position, crop)
    ready.set()
    done.wait()
    out.put({"start": before, "loaded": loaded, "composed": _figures()})


def _run(folder: Path, processes: int) -> dict:
    ctx = mp.get_context("spawn")
    ready, done, out = [ctx.Event() for _ in range(processes)], ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_compose_all, args=(str(folder), r, done, out)) for r in ready]
    for p in procs:
        p.start()
    for r in ready:
        r.wait()
    done.set()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return results[0]


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    args = parser.parse_args()
    n, h, w = args.frames, args.height, args.width
    with tempfile.TemporaryDirectory() as tmp:
        frames = np.lib.format.open_memmap(Path(tmp) / "src.npy", "w+", np.uint8, (n, h, w, 3))
        for i in range(n):
            frames[i] = i % 251
        box = np.array([[w // 2 - 200, h // 2 - 200, w // 2 + 200, h // 2 + 220]] * n, np.int32)
        template = PreparedTemplate(
            id="big",
            name="big",
            kind="video",
            frames=frames,
            face_boxes=box,
            mouth=np.zeros((n, 2), np.float32),
            blend_boxes=box,
            blend_masks=np.full((n, 256, 256), 200, np.uint8),
            renderer="bench",
            welcome=None,
        )
        cache.save(template, Path(tmp) / "cache", "0" * 64, KEY)
        del template, frames
        alone = _run(Path(tmp) / "cache", 1)
        shared = _run(Path(tmp) / "cache", 2)
    return {
        "machine": machine(),
        "frames": n,
        "size": f"{w}x{h}",
        "frames_mib": round(n * h * w * 3 / 2**20, 1),
        "one_process": alone,
        "beside_a_second_process": shared,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
