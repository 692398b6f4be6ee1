"""Sessions per device: the real pool on sim devices, live streams in real time, no WebRTC.

    python bench/scale.py [--devices 1] [--fixed-ms 200] [--per-frame-ms 6] [--max-batch 32]
                          [--no-batching] [--seconds 8] [--fronts N] [--json]

Each synthetic session speaks continuously through a live stream: 40 ms of audio arrives
every 40 ms, the server's segmenter cuts windows as it would (a short first window, a ramp,
and a cut of all audio known when playout is about to run dry), and each window's first
frame is due when playout reaches it (playout starts when the first window is rendered, plus
the playout lead). A late window stalls playout, which resumes in sync, as the server's does.
Stalls in the first `--warmup-s` of a stream are start-up (the buffer a cost model needs is
being built: reported as `startup_missed`); after it, a late window is a missed deadline.
The low-water mark and the playout lead are the render latency the cost model needs (two
full-batch calls), not the server's 4 units tuned for lite. N sessions run together; N rises until one misses.
`--fronts N`: the devices are named render actors of a local Ray instance, shared by N
fronts (bench/scale_fronts.py) that take the sessions in turn; one front ramps first on the
same actors, and `fronts_ratio` is N fronts' sessions over one front's.
Figures: `sessions_per_device` (most sessions with no missed deadline, per device),
`model_sessions_per_device` (what the cost model allows: B frames every F + B·P ms, 25 fps a
session), p95 window latency, frames/s per device, mean frames per model call, host CPU (all
of it: past 80 % the run is marked invalid) and the bench's own share of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil

import _checkout  # noqa: F401
from bench.common import TEMPLATE, machine, template_dir
from bench.scale_fronts import ray_fronts
from bench.scale_streams import Stream, Window, speech
from streamer.config import Settings
from streamer.errors import StreamerError
from streamer.pool.base import RenderPool
from streamer.pool.front.local import LocalPool
from streamer.render.base import RenderJob, job_audio
from streamer.units import FPS, MODEL_SAMPLES_PER_UNIT

TICK_S = 1 / FPS
CPU_LIMIT_PCT = 80.0


async def run_stream(pool: RenderPool, stream: Stream, t0: float, args: argparse.Namespace, tasks: list) -> None:
    seconds, low_water = args.seconds, args.low_water
    for tick in range(int(seconds * FPS)):
        await asyncio.sleep(max(0.0, t0 + tick * TICK_S - time.monotonic()))
        now = time.monotonic()
        chunk = stream.audio[tick * MODEL_SAMPLES_PER_UNIT : (tick + 1) * MODEL_SAMPLES_PER_UNIT]
        cut = stream.cutter.push(chunk)
        waiting = stream.cutter.total_units - stream.cutter.lookahead_units - stream.cut_units
        if (
            not cut
            and stream.play_start is not None
            and waiting >= args.min_window
            and stream.cut_units - stream.played(now) < low_water
        ):
            cut = stream.cutter.cut_available()
        for w in cut:
            window = Window(w.first_unit, w.units, now)
            stream.windows.append(window)
            stream.cut_units = w.first_unit + w.units
            tasks.append(asyncio.create_task(render(pool, stream, window, tick, now)))


async def render(pool: RenderPool, stream: Stream, window: Window, tick: int, now: float) -> None:
    first = window.first_unit
    known = (tick + 1) * MODEL_SAMPLES_PER_UNIT
    due = 0.0 if first == 0 else stream.scheduled(first, now) - now
    audio, offset = job_audio(stream.audio[:known], first, window.units, False, pool.audio_context_units)
    job = RenderJob(
        TEMPLATE,
        np.arange(first, first + window.units, dtype=np.int64),
        audio,
        offset,
        final=False,
        session_id=f"s{stream.index}",
        due_in_s=due,
    )
    try:
        await pool.render(job)
    except StreamerError:
        window.failed = True
    window.ready_at = time.monotonic()
    stream.arrived()


async def level(pools: list[RenderPool], sessions: int, args: argparse.Namespace) -> dict[str, Any]:
    """N sessions streaming together (on the fronts in turn); their misses after the warm-up,
    latencies and frames (the workers' counters, which count every front's work)."""
    before = _counted(pools)
    streams = [Stream(i, speech(args.seconds + 1, seed=i), args.lead / FPS) for i in range(sessions)]
    tasks: list[asyncio.Task] = []
    t0 = time.monotonic()
    psutil.cpu_percent(None)
    own = _own_cpu_s()
    await asyncio.gather(
        *(run_stream(pools[i % len(pools)], s, t0 + (i * 0.37) % 1.0, args, tasks) for i, s in enumerate(streams))
    )
    await asyncio.gather(*tasks)
    cpu = psutil.cpu_percent(None)
    elapsed = time.monotonic() - t0
    own = (_own_cpu_s() - own) / elapsed / (psutil.cpu_count() or 1) * 100
    after = _counted(pools)
    windows = [w for s in streams for w in s.windows]
    steady = [w for w in windows if w.first_unit >= args.warmup_s * FPS]
    latencies = [(w.ready_at - w.sent_at) * 1000 for w in windows if w.ready_at is not None]
    calls, frames = after[0] - before[0], after[1] - before[1]
    return {
        "sessions": sessions,
        "missed_deadlines": sum(w.missed for w in steady),
        "startup_missed": sum(w.missed for w in windows) - sum(w.missed for w in steady),
        "windows": len(windows),
        "stall_s": round(sum(s.shift_s for s in streams), 2),
        "p95_window_ms": round(float(np.percentile(latencies, 95)), 1) if latencies else 0.0,
        "frames_per_s": frames / elapsed,
        "mean_batch_frames": round(frames / calls, 2) if calls else 0.0,
        "host_cpu_pct": cpu,
        "bench_cpu_pct": round(own, 1),
    }


def _counted(pools: list[RenderPool]) -> tuple[int, int]:
    """Model calls (each worker's own count, which every front sees, the newest the highest)
    and frames (each front counts the frames it was sent back)."""
    rows = [pool.stats() for pool in pools]
    calls = sum(max(r[i]["calls"] for r in rows) for i in range(len(rows[0])))
    return calls, sum(row["frames"] for r in rows for row in r)


def _own_cpu_s() -> float:
    """CPU seconds of this process and its workers (the rest of the host is other work)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(child.cpu_times()[:2])
    return total


async def scale(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    settings = replace(
        Settings(),
        renderer="sim",
        templates_dir=template_dir(work / "templates"),
        cache_dir=work / "cache",
        sim_fixed_ms=args.fixed_ms,
        sim_per_frame_ms=args.per_frame_ms,
        batch_size=args.max_batch,
        batch_across_jobs=not args.no_batching,
    )
    devices = [f"sim:{i}" for i in range(args.devices)]
    if args.fronts:
        async with ray_fronts(settings, devices, args.fronts) as pools:
            for pool in pools:
                await pool.prepare(TEMPLATE)
            one = await ramp([pools[0]], args) if args.fronts > 1 else None
            return {**await ramp(list(pools), args), "one_front": one}
    local = LocalPool(settings, devices)
    await local.start()
    try:
        await local.prepare(TEMPLATE)
        return await ramp([local], args)
    finally:
        await local.close()


async def ramp(pools: list[RenderPool], args: argparse.Namespace) -> dict[str, Any]:
    """Sessions rise until one misses a deadline."""
    best, failed, levels = None, None, []
    for n in range(max(1, args.start), args.max_sessions + 1):
        result = await level(pools, n, args)
        levels.append(result)
        if result["missed_deadlines"]:
            failed = result
            break
        best = result
    return {"best": best, "failed": failed, "levels": levels, "capacity": pools[0].capacity()}


def _levels(run: dict[str, Any] | None) -> list[dict[str, Any]]:
    levels = run["levels"] if run else []
    return [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in lv.items()} for lv in levels]


def _sessions(run: dict[str, Any] | None) -> int | None:
    return (run["best"]["sessions"] if run["best"] else 0) if run else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--fixed-ms", type=float, default=200.0)
    parser.add_argument("--per-frame-ms", type=float, default=6.0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--no-batching", action="store_true", help="one job per model call")
    parser.add_argument("--seconds", type=float, default=8.0, help="streaming time per level")
    parser.add_argument("--start", type=int, default=1, help="sessions of the first level")
    parser.add_argument("--max-sessions", type=int, default=64)
    parser.add_argument(
        "--warmup-s", type=float, default=2.0, help="stream time whose stalls are start-up (reported apart, not misses)"
    )
    parser.add_argument(
        "--low-water",
        type=int,
        default=0,
        help="units ahead of playout below which all known audio is cut (default: two "
        "full-batch calls of the cost model, at least the server's 4)",
    )
    parser.add_argument(
        "--min-window", type=int, default=3, help="units a low-water cut waits for (fewer, larger jobs than one a tick)"
    )
    parser.add_argument(
        "--lead", type=int, default=0, help="playout lead in units (default: two full-batch calls of the cost model)"
    )
    parser.add_argument("--fronts", type=int, default=0, help="N fronts sharing Ray actors (0: a local pool)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    if not args.lead:
        args.lead = max(4, math.ceil(2 * (args.fixed_ms + args.max_batch * args.per_frame_ms) / 1000 * FPS))
    if not args.low_water:
        args.low_water = 2 * args.lead
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        run = asyncio.run(scale(args, Path(tmp)))
    best, failed = run["best"], run["failed"]
    cpu = max(level["host_cpu_pct"] for level in run["levels"])
    model_fps = args.max_batch / (args.fixed_ms + args.max_batch * args.per_frame_ms) * 1000
    if args.no_batching:
        model_fps = 1 / ((args.fixed_ms + args.per_frame_ms) / 1000)  # one-frame jobs at best
    sessions = best["sessions"] if best else 0
    result = {
        "devices": args.devices,
        "fixed_ms": args.fixed_ms,
        "per_frame_ms": args.per_frame_ms,
        "max_batch": args.max_batch,
        "batching": not args.no_batching,
        "seconds_per_level": args.seconds,
        "warmup_s": args.warmup_s,
        "low_water_units": args.low_water,
        "lead_units": args.lead,
        "min_window_units": args.min_window,
        "fronts": args.fronts,
        "sessions_total": sessions,
        "one_front_sessions": _sessions(run.get("one_front")),
        "fronts_ratio": round(sessions / _sessions(run.get("one_front")), 2)
        if _sessions(run.get("one_front"))
        else None,
        "sessions_per_device": round(sessions / args.devices, 2),
        "model_sessions_per_device": round(model_fps / FPS, 2),
        "missed_deadlines": failed["missed_deadlines"] if failed else 0,
        "missed_at_sessions": failed["sessions"] if failed else None,
        "startup_missed": best["startup_missed"] if best else None,
        "p95_window_ms": best["p95_window_ms"] if best else None,
        "frames_per_s_per_device": round(best["frames_per_s"] / args.devices, 1) if best else 0.0,
        "mean_batch_frames": best["mean_batch_frames"] if best else 0.0,
        "measured_frames_per_s_per_device": round(run["capacity"].frames_per_s / args.devices, 1),
        "host_cpu_pct": cpu,
        "bench_cpu_pct": max(level["bench_cpu_pct"] for level in run["levels"]),
        "valid": cpu <= CPU_LIMIT_PCT,
        "note": "" if cpu <= CPU_LIMIT_PCT else f"host CPU passed {CPU_LIMIT_PCT:.0f} %: figures invalid",
        "levels": _levels(run),
        "one_front_levels": _levels(run.get("one_front")),
        "machine": machine(),
    }
    if not args.json:
        print(__doc__.splitlines()[0], file=sys.stderr)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
