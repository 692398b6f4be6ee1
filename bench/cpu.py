"""Where the server's CPU goes per session-second, ours beside a stock aiortc server.

    python bench/cpu.py [--sessions 4] [--seconds 8] [--repeats 3] [--ramp 8,16,24,32]

Each run starts a server process, then a viewer process that opens `--sessions` peer
connections to it over loopback. The viewers receive and reassemble RTP (and answer with RTCP:
receiver reports, REMB, NACK, PLI) but never decode it: aiortc's decoder factory is replaced by
one that only counts frames, so the viewers' own cost neither caps nor disturbs the figures
much. Over `--seconds` after a warm-up the bench reads the server's CPU time from /proc,
split into its event-loop thread (the main thread), its other threads (encoders, compose,
SRTP in executor threads) and its child processes (render workers), and divides by sessions ×
seconds: ms of CPU per session-second.

Runs are interleaved, ours then stock for each codec (VP8, H.264) and state (idle, speaking),
`--repeats` times, and the median of each is reported. The stock server (bench/cpu_stock.py) is the plain aiortc
way: the same template at the same 512×512, 25 fps and codec, BGR frames handed to aiortc's
own encoders (which convert them), silence or the same speech as 20 ms audio frames; speaking
means the frames of the lite renderer's moving mouth, composed once before the run.

The ramp then opens more and more idle sessions on our server (default codec order) until the
viewers stop getting 25 fps or the event-loop thread is busy more than `LOOP_SATURATED` of the
time; `loop_saturates_near_sessions` extrapolates the loop's cost per session to one core.
On a machine shared with other work the figures are disturbed: rerun them on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

import _checkout  # noqa: F401
from bench.common import SENTENCES, machine, speech_wav, template_dir
from tests.served import Served

HERE = Path(__file__).resolve().parent
FULL_RATE_FPS = 24.0
LOOP_SATURATED = 0.8
CODECS = ("vp8", "h264")
STATES = ("idle", "speaking")


def cpu_split(pid: int) -> dict[str, float]:
    """CPU seconds so far of the process's main (event-loop) thread, its other threads (the
    process total less the loop: threads that have exited still count), and its children."""
    process = psutil.Process(pid)
    total = process.cpu_times()
    loop = sum(t.user_time + t.system_time for t in process.threads() if t.id == pid)
    workers = 0.0
    for child in process.children(recursive=True):
        try:
            t = child.cpu_times()
            workers += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return {"loop": loop, "threads": total.user + total.system - loop, "workers": workers}


def per_session_second(
    before: dict[str, float], after: dict[str, float], sessions: int, seconds: float
) -> dict[str, float]:
    out = {k: round((after[k] - before[k]) * 1000 / (sessions * seconds), 1) for k in before}
    out["server"] = round(out["loop"] + out["threads"], 1)
    return out


# --- servers ------------------------------------------------------------------------------


def start_ours(work: Path) -> Served:
    env = {
        "STREAMER_TEMPLATES_DIR": str(template_dir(work / "templates")),
        "STREAMER_CACHE_DIR": str(work / "cache"),
        "STREAMER_MAX_SESSIONS": "500",
        "STREAMER_RENDERER": "lite",
        "STREAMER_LOG_LEVEL": "WARNING",
    }
    return Served(env=env)


def start_stock(work: Path, state: str, wav: Path) -> Served:
    """bench/cpu_stock.py, launched like `run.py serve`."""
    args = ("--work", str(work), "--state", state, "--wav", str(wav))
    return Served(*args, launcher=(sys.executable, str(HERE / "cpu_stock.py")))


# --- one run ------------------------------------------------------------------------------


def run_once(
    impl: str,
    codec: str | None,
    state: str,
    sessions: int,
    seconds: float,
    warmup: float,
    work: Path,
    wav: Path,
) -> dict[str, Any]:
    served = start_ours(work) if impl == "ours" else start_stock(work, state, wav)
    url, server = served.url, served.process
    try:
        served.wait_ready()
        viewer_args = [
            "--viewers",
            url,
            "--api",
            impl,
            "--sessions",
            str(sessions),
            "--codec",
            codec or "any",
            "--warmup",
            str(warmup),
            "--seconds",
            str(seconds),
        ]
        if impl == "ours" and state == "speaking":
            viewer_args += ["--speak", str(wav)]
        viewers = subprocess.Popen(
            [sys.executable, str(HERE / "cpu_viewers.py"), *viewer_args],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert viewers.stdout is not None
        before = after = None
        started = 0.0
        result: dict[str, Any] = {}
        for line in viewers.stdout:
            if line.startswith("START"):
                before, started = cpu_split(server.pid), time.monotonic()
            elif line.startswith("STOP"):
                after, elapsed = cpu_split(server.pid), time.monotonic() - started
                result = json.loads(line[4:])
        viewers.wait(60)
        if before is None or after is None:
            raise RuntimeError(f"viewers exited with {viewers.returncode} before the measurement ended")
        return {
            "cpu_ms_per_session_s": per_session_second(before, after, sessions, elapsed),
            **result,
        }
    finally:
        served.stop()


# --- the bench ----------------------------------------------------------------------------


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = runs[0]["cpu_ms_per_session_s"].keys()
    return {
        "cpu_ms_per_session_s": {k: statistics.median(r["cpu_ms_per_session_s"][k] for r in runs) for k in keys},
        "fps_min": min(r["fps_min"] for r in runs),
        "fps_median": statistics.median(r["fps_median"] for r in runs),
        "runs": [r["cpu_ms_per_session_s"]["server"] for r in runs],
    }


def compare(args: argparse.Namespace, work: Path, wav: Path) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeats):
        for codec in CODECS:
            for state in STATES:
                for impl in ("ours", "stock"):
                    key = f"{impl}_{codec}_{state}"
                    runs.setdefault(key, []).append(
                        run_once(
                            impl,
                            codec,
                            state,
                            args.sessions,
                            args.seconds,
                            args.warmup,
                            work,
                            wav,
                        )
                    )
    out = {key: median_of(r) for key, r in runs.items()}
    for codec in CODECS:
        for state in STATES:
            ours = out[f"ours_{codec}_{state}"]["cpu_ms_per_session_s"]["server"]
            stock = out[f"stock_{codec}_{state}"]["cpu_ms_per_session_s"]["server"]
            out[f"ratio_{codec}_{state}"] = round(ours / stock, 2) if stock else None
    return out


def ramp(args: argparse.Namespace, work: Path, wav: Path) -> dict[str, Any]:
    steps = []
    for impl in ("ours", "stock"):
        for n in (int(v) for v in args.ramp.split(",") if v):
            run = run_once(
                impl,
                None if impl == "ours" else "vp8",
                "idle",
                n,
                args.seconds,
                args.warmup,
                work,
                wav,
            )
            loop_busy = run["cpu_ms_per_session_s"]["loop"] * n / 1000
            full = run["fps_min"] >= FULL_RATE_FPS and run["connected"] == n
            steps.append(
                {
                    "impl": impl,
                    "sessions": n,
                    "fps_min": run["fps_min"],
                    "loop_busy": round(loop_busy, 2),
                    "server_ms_per_session_s": run["cpu_ms_per_session_s"]["server"],
                    "full_rate": full,
                }
            )
            if not full or loop_busy > LOOP_SATURATED:
                break
    out: dict[str, Any] = {"steps": steps}
    for impl in ("ours", "stock"):
        mine = [s for s in steps if s["impl"] == impl]
        out[f"{impl}_full_rate_sessions"] = max((s["sessions"] for s in mine if s["full_rate"]), default=0)
        loop = [s["loop_busy"] / s["sessions"] for s in mine if s["sessions"]]
        out[f"{impl}_loop_saturates_near_sessions"] = (
            int(1 / statistics.median(loop)) if loop and statistics.median(loop) > 0 else None
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--warmup",
        type=float,
        default=8.0,
        help="past the welcome clip, encoders settled",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--ramp",
        default="8,16,24,32",
        help="session counts of the saturation ramp ('' skips it)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        work = Path(tmp)
        parts = [speech_wav(s, work / f"line{i}.wav") for i, s in enumerate(SENTENCES)]
        wav = work / "speech.wav"
        subprocess.run(["sox", *map(str, parts), str(wav)], check=True)
        return {
            "bench": "cpu",
            "machine": machine(),
            "sessions": args.sessions,
            "seconds": args.seconds,
            "repeats": args.repeats,
            "compare": compare(args, work, wav),
            "ramp": ramp(args, work, wav) if args.ramp else None,
        }


if __name__ == "__main__":
    print(json.dumps(main()))
