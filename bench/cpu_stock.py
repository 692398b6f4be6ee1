"""bench/cpu.py's stock aiortc server, a process of its own: the plain aiortc way, BGR frames and
20 ms audio frames handed to aiortc's own encoders, at 25 fps and 512×512.

    python bench/cpu_stock.py serve --port P --work DIR --state idle|speaking --wav WAV

The same command shape as `run.py serve`, so tests/served.py launches and polls it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import _checkout  # noqa: F401


def stock_frames(work: Path, state: str, wav: Path) -> tuple[list[Any], Any]:
    """BGR frames and 48 kHz int16 audio the stock server loops: the still template and silence,
    or the lite renderer's moving mouth composed once, with its speech."""
    import numpy as np

    from bench.common import lite_template
    from streamer.audio import decode_file
    from streamer.render.base import RenderJob
    from streamer.render.lite import LiteRenderer
    from streamer.units import MODEL_RATE, MODEL_SAMPLES_PER_UNIT, OUT_RATE
    from streamer.video.compositor import compose

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
    web.run_app(app, host="127.0.0.1", port=int(args.port), print=None, access_log=None)


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("command", choices=["serve"])
    for name in ("--port", "--work", "--state", "--wav"):
        cli.add_argument(name, required=True)
    stock_main(cli.parse_args())
