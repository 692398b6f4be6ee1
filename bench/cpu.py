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
`--repeats` times, and the median of each is reported. The stock server is the plain aiortc
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
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.common import SENTENCES, machine, speech_wav, template_dir, wait_ready  # noqa: E402
from streamer.testing import free_port  # noqa: E402

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


def start_ours(port: int, work: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "STREAMER_TEMPLATES_DIR": str(template_dir(work / "templates")),
        "STREAMER_CACHE_DIR": str(work / "cache"),
        "STREAMER_MAX_SESSIONS": "500",
        "STREAMER_RENDERER": "lite",
        "STREAMER_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "run.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_stock(port: int, work: Path, state: str, wav: Path) -> subprocess.Popen:
    args = [
        "--stock-server",
        str(port),
        "--work",
        str(work),
        "--state",
        state,
        "--wav",
        str(wav),
    ]
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


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
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_ours(port, work) if impl == "ours" else start_stock(port, work, state, wav)
    try:
        wait_ready(url, server)
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
            [sys.executable, __file__, *viewer_args],
            cwd=ROOT,
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
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


# --- viewers (their own process) ------------------------------------------------------------


class CountingDecoder:
    """Stands in for aiortc's decoders: counts the reassembled frames, decodes nothing."""

    counts: ClassVar[dict[int, int]] = {}

    def __init__(self, key: int) -> None:
        self.key = key

    def decode(self, encoded_frame: Any) -> list:
        CountingDecoder.counts[self.key] = CountingDecoder.counts.get(self.key, 0) + 1
        return []


async def open_viewer(http: Any, url: str, api: str, codec: str, speak: bytes | None) -> Any:
    from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    pc = RTCPeerConnection()
    video = pc.addTransceiver("video", direction="recvonly")
    if codec != "any":
        caps = RTCRtpReceiver.getCapabilities("video").codecs
        video.setCodecPreferences([c for c in caps if c.mimeType.lower() in (f"video/{codec}", "video/rtx")])
    pc.addTransceiver("audio", direction="recvonly")

    drains: set[asyncio.Future[None]] = set()  # held, so that the loop's weak references keep them

    @pc.on("track")
    def on_track(track: Any) -> None:
        async def drain() -> None:
            try:
                while True:
                    await track.recv()
            except MediaStreamError:
                pass  # the peer connection closed

        task = asyncio.ensure_future(drain())
        drains.add(task)
        task.add_done_callback(drains.discard)

    await pc.setLocalDescription(await pc.createOffer())
    body = {"template": "astronaut", "sdp": pc.localDescription.sdp, "type": "offer"}
    async with http.post(url + ("/api/sessions" if api == "ours" else "/offer"), json=body) as r:
        reply = await r.json()
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], reply["type"]))
    if speak is not None:
        headers = {
            "Authorization": f"Bearer {reply['token']}",
            "Content-Type": "audio/wav",
        }
        for _ in range(2):  # queued back to back: speech through the whole measurement
            async with http.post(
                f"{url}/api/sessions/{reply['session_id']}/speak",
                data=speak,
                headers=headers,
            ) as r:
                assert r.status == 202, await r.text()
    return pc


async def viewers_main(args: argparse.Namespace) -> None:
    import aiohttp
    from aiortc import rtcrtpreceiver

    made = iter(range(1_000_000))

    def counting(codec: Any) -> Any:
        return CountingDecoder(next(made) if codec.mimeType.lower().startswith("video/") else -1)

    rtcrtpreceiver.get_decoder = counting
    speak = Path(args.speak).read_bytes() if args.speak else None
    async with aiohttp.ClientSession() as http:
        pcs = [await open_viewer(http, args.viewers, args.api, args.codec, speak) for _ in range(args.sessions)]
        await asyncio.sleep(args.warmup)
        first = dict(CountingDecoder.counts)
        print("START", flush=True)
        started = time.monotonic()
        await asyncio.sleep(args.seconds)
        elapsed = time.monotonic() - started
        fps = sorted((CountingDecoder.counts.get(k, 0) - first.get(k, 0)) / elapsed for k in range(len(pcs)))
        result = {
            "sessions": len(pcs),
            "seconds": round(elapsed, 2),
            "fps_min": round(fps[0], 1) if fps else 0.0,
            "fps_median": round(statistics.median(fps), 1) if fps else 0.0,
            "connected": sum(pc.connectionState == "connected" for pc in pcs),
        }
        print("STOP" + json.dumps(result), flush=True)
        await asyncio.gather(*(pc.close() for pc in pcs))


# --- the stock aiortc server (its own process) ----------------------------------------------


def stock_frames(work: Path, state: str, wav: Path) -> tuple[list[Any], Any]:
    """BGR frames and 48 kHz int16 audio the stock server loops: the still template and silence,
    or the lite renderer's moving mouth composed once, with its speech."""
    import numpy as np

    from bench.common import lite_template
    from streamer.audio import decode_file
    from streamer.media.compositor import compose
    from streamer.render.base import RenderJob
    from streamer.render.lite import LiteRenderer
    from streamer.units import MODEL_RATE, MODEL_SAMPLES_PER_UNIT, OUT_RATE

    template = lite_template(work)
    if state == "idle":
        return [template.frames[0]], np.zeros(OUT_RATE // 50, np.int16)
    audio16k = decode_file(wav, MODEL_RATE)
    units = len(audio16k) // MODEL_SAMPLES_PER_UNIT
    job = RenderJob(
        template.id,
        np.arange(units, dtype=np.int64),
        audio16k,
        first_unit=0,
        final=True,
    )
    crops = LiteRenderer().render(template, job)
    frames = [compose(template, n, crop) for n, crop in enumerate(crops)]
    audio = (np.clip(decode_file(wav, OUT_RATE), -1, 1) * 32767).astype(np.int16)
    return frames, audio


def stock_main(args: argparse.Namespace) -> None:
    import fractions

    import av
    from aiohttp import web
    from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

    frames, audio = stock_frames(Path(args.work), args.state, Path(args.wav))
    packet = 960

    class Paced(MediaStreamTrack):
        """A track at `rate` frames per second, pts from a counter, as aiortc's examples pace."""

        def __init__(self, kind: str, rate: int, clock: int) -> None:
            super().__init__()
            self.kind, self._rate, self._clock, self._n, self._start = (
                kind,
                rate,
                clock,
                0,
                None,
            )

        async def recv(self) -> Any:
            if self._start is None:
                self._start = time.monotonic()
            await asyncio.sleep(max(0.0, self._start + self._n / self._rate - time.monotonic()))
            n, self._n = self._n, self._n + 1
            if self.kind == "video":
                frame = av.VideoFrame.from_ndarray(frames[n % len(frames)], format="bgr24")
            else:
                at = (n * packet) % max(len(audio) - packet, 1)
                frame = av.AudioFrame.from_ndarray(audio[at : at + packet].reshape(1, -1), format="s16", layout="mono")
                frame.sample_rate = 48000
            frame.pts, frame.time_base = (
                n * (self._clock // self._rate),
                fractions.Fraction(1, self._clock),
            )
            return frame

    pcs: set[Any] = set()

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        pc = RTCPeerConnection()
        pcs.add(pc)
        await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
        pc.addTrack(Paced("video", 25, 90_000))
        pc.addTrack(Paced("audio", 50, 48_000))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    app = web.Application()
    app.router.add_post("/offer", offer)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=int(args.stock_server), print=None, access_log=None)


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
    cli = argparse.ArgumentParser(add_help=False)
    cli.add_argument("--viewers")
    cli.add_argument("--stock-server")
    known, _ = cli.parse_known_args()
    if known.viewers:
        v = argparse.ArgumentParser()
        for name in ("--viewers", "--api", "--codec", "--speak"):
            v.add_argument(name)
        v.add_argument("--sessions", type=int)
        v.add_argument("--warmup", type=float)
        v.add_argument("--seconds", type=float)
        asyncio.run(viewers_main(v.parse_args()))
    elif known.stock_server:
        s = argparse.ArgumentParser()
        for name in ("--stock-server", "--work", "--state", "--wav"):
            s.add_argument(name)
        stock_main(s.parse_args())
    else:
        print(json.dumps(main()))
