"""bench/cpu.py's viewers, a process of their own: `--sessions` peer connections to a server that
receive and reassemble RTP (and answer with RTCP) but never decode it, and report the frame rate.

    python bench/cpu_viewers.py --viewers URL --api ours|stock --sessions N --codec vp8|h264|any
        --warmup S --seconds S [--speak WAV]

Prints START when the measurement begins and STOP{json} when it ends (bench/cpu.py reads the
server's CPU time at each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any, ClassVar


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


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--viewers", "--api", "--codec", "--speak"):
        parser.add_argument(name)
    parser.add_argument("--sessions", type=int)
    parser.add_argument("--warmup", type=float)
    parser.add_argument("--seconds", type=float)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(viewers_main(parse()))
