"""Soak: sessions opened, spoken to, interrupted and closed in a loop; does anything grow?

    python bench/soak.py --minutes 30 [--warmup-minutes 2]

Starts `run.py serve` (lite renderer) as its own process. One watcher session stays open the
whole run (a headless viewer attached, spoken to every round); beside it, each round opens a
session, speaks, speaks again and interrupts, and closes it. After the warm-up and at the end
it reads, for the server and each child process (render workers, audio decoders): memory as
USS and PSS (so shared mappings do not count twice), open fds and threads; and the server's
asyncio tasks (keyless `/api/stats` `process`); and the server's USS and threads once a minute.
The watcher's A/V offset: each received video frame's RTP timestamp and the audio RTP timestamp
of the same media instant, each mapped to the sender's clock through its track's RTCP sender
reports, averaged over the first and over the last minute (the sender reports and the RTP
timestamp origin are aiortc's private receiver state: a bench may read them). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

import _checkout  # noqa: F401
from bench.common import machine
from streamer.headless.client import Client
from tests.served import Served

CLOCK_RATES = {"video": 90000, "audio": 48000}
NTP_EPOCH_OFFSET = 2208988800


def _mib(value: float) -> float:
    return round(value / 2**20, 2)


def process_figures(pid: int, url: str) -> dict[str, Any]:
    """USS/PSS, fds and threads of the server and of its children; the server's asyncio tasks."""
    server = psutil.Process(pid)
    children = server.children(recursive=True)

    def one(p: psutil.Process) -> dict[str, float]:
        mem = p.memory_full_info()
        return {
            "uss_mib": _mib(mem.uss),
            "pss_mib": _mib(mem.pss),
            "rss_mib": _mib(mem.rss),
            "fds": p.num_fds(),
            "threads": p.num_threads(),
        }

    with urllib.request.urlopen(url + "/api/stats", timeout=10) as r:
        stats = json.load(r)
    kids = [one(c) for c in children]
    names = [" ".join(c.cmdline()[-2:])[-60:] for c in children]
    return {
        "server": one(server) | {"asyncio_tasks": stats["process"]["tasks"], "thread_names": thread_names(pid)},
        "children": len(kids),
        "children_uss_mib": round(sum(k["uss_mib"] for k in kids), 2),
        "children_pss_mib": round(sum(k["pss_mib"] for k in kids), 2),
        "children_fds": sum(int(k["fds"]) for k in kids),
        "children_threads": sum(int(k["threads"]) for k in kids),
        "children_uss_each_mib": {
            f"{i}: {name}": k["uss_mib"] for i, (name, k) in enumerate(zip(names, kids, strict=True))
        },
        "open_sessions": stats["sessions"]["open"],
    }


def server_uss_mib(pid: int) -> float:
    return _mib(psutil.Process(pid).memory_full_info().uss)


def thread_names(pid: int) -> dict[str, int]:
    """How many of the process's threads bear each name (a grown pool shows which)."""
    names = Counter(Path(f"/proc/{pid}/task/{t}/comm").read_text().strip() for t in os.listdir(f"/proc/{pid}/task"))
    return dict(sorted(names.items()))


@dataclass
class SenderClock:
    """Maps one track's RTP timestamps to the sender's wall clock through its RTCP sender reports."""

    rate: int
    ntp: float | None = None
    rtp: int | None = None

    def report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self.ntp = (ntp_timestamp >> 32) + (ntp_timestamp & 0xFFFFFFFF) / 2**32 - NTP_EPOCH_OFFSET
        self.rtp = rtp_timestamp

    def sent_at(self, rtp_timestamp: int) -> float | None:
        if self.ntp is None or self.rtp is None:
            return None
        delta = (rtp_timestamp - self.rtp) & 0xFFFFFFFF
        if delta >= 2**31:
            delta -= 2**32
        return self.ntp + delta / self.rate


@dataclass
class AvWatch:
    """At each received video frame: its send time minus that of the audio of the same media instant.

    Both tracks stamp pts from one unit counter, so a video pts names a media instant that an
    audio RTP timestamp also names; each side is mapped to the sender's clock through its own
    track's latest sender report. A constant offset (which unit each track's first packet
    carried) cancels out of the drift.
    """

    clocks: dict[str, SenderClock] = field(default_factory=lambda: {k: SenderClock(r) for k, r in CLOCK_RATES.items()})
    mappers: dict[str, Any] = field(default_factory=dict)
    """aiortc's receive-side TimestampMapper per track: frame pts = RTP timestamp - its origin."""
    samples: list[tuple[float, float]] = field(default_factory=list)
    """(local monotonic time, video - audio send time in ms)."""

    def attach(self, pc: Any) -> None:
        """Hook each receiver's RTCP handling (aiortc keeps the sender reports to itself)."""
        from aiortc.rtp import RtcpSrPacket

        for transceiver in pc.getTransceivers():
            receiver, kind = transceiver.receiver, transceiver.kind
            self.mappers[kind] = receiver._RTCRtpReceiver__timestamp_mapper
            original = receiver._handle_rtcp_packet

            async def handle(packet: Any, original: Any = original, kind: str = kind) -> None:
                if isinstance(packet, RtcpSrPacket):
                    self.clocks[kind].report(packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp)
                await original(packet)

            receiver._handle_rtcp_packet = handle

    def video_frame(self, pts: int | None) -> None:
        video = getattr(self.mappers.get("video"), "_origin", None)
        audio = getattr(self.mappers.get("audio"), "_origin", None)
        if pts is None or video is None or audio is None:
            return
        sent_video = self.clocks["video"].sent_at((pts + video) & 0xFFFFFFFF)
        audio_pts = pts * CLOCK_RATES["audio"] // CLOCK_RATES["video"]
        sent_audio = self.clocks["audio"].sent_at((audio_pts + audio) & 0xFFFFFFFF)
        if sent_video is not None and sent_audio is not None:
            self.samples.append((time.monotonic(), 1000 * (sent_video - sent_audio)))

    def mean_between(self, start: float, end: float) -> float | None:
        inside = [ms for t, ms in self.samples if start <= t < end]
        return round(sum(inside) / len(inside), 2) if inside else None


class Watcher(Client):
    """The headless client, also feeding each frame's RTP timestamp to an AvWatch."""

    def __init__(self, server: str) -> None:
        super().__init__(server)
        self.av = AvWatch()

    async def _read_video(self, track: Any) -> None:
        self.av.attach(self.pc)
        original = track.recv

        async def recv() -> Any:
            frame = await original()
            self.av.video_frame(frame.pts)
            return frame

        track.recv = recv
        await super()._read_video(track)


async def churn_round(url: str, speech: bytes) -> None:
    client = Client(url)
    try:
        await client.connect("astronaut")
        await client.wait_frames(3)
        first, _ = await client.speak(speech, "audio/wav")
        second, _ = await client.speak(speech, "audio/wav")
        await client.wait_event("speaking_ended", first["utterance_id"], timeout=60)
        await client.wait_event("speaking_started", second["utterance_id"], timeout=30)
        await client.interrupt()
    finally:
        await client.close()


async def soak(url: str, pid: int, speech: bytes, minutes: float, warmup_minutes: float) -> dict[str, Any]:
    watcher = Watcher(url)
    await watcher.connect("astronaut")
    await watcher.wait_frames(10)
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    warm_until = started + warmup_minutes * 60
    end = started + minutes * 60
    rounds, before = 0, None
    series: list[dict[str, float]] = []
    while time.monotonic() < end:
        await watcher.speak(speech, "audio/wav")
        await churn_round(url, speech)
        rounds += 1
        minute = (time.monotonic() - started) / 60
        if not series or minute >= series[-1]["minute"] + 1:
            series.append(
                {
                    "minute": round(minute, 2),
                    "rounds": rounds,
                    "server_uss_mib": server_uss_mib(pid),
                    "server_threads": psutil.Process(pid).num_threads(),
                }
            )
        if before is None and time.monotonic() >= warm_until:
            before = await loop.run_in_executor(None, process_figures, pid, url)
            before_rounds = rounds
    after = await loop.run_in_executor(None, process_figures, pid, url)
    if before is None:
        before, before_rounds = after, rounds
    finished = time.monotonic()
    first = watcher.av.mean_between(started, min(started + 60, finished))
    last = watcher.av.mean_between(max(started, finished - 60), finished)
    await watcher.close()
    measured = max(1, rounds - before_rounds)
    return {
        "rounds": rounds,
        "rounds_after_warmup": rounds - before_rounds,
        "after_warmup": before,
        "at_end": after,
        "server_uss_growth_pct": _pct(before["server"]["uss_mib"], after["server"]["uss_mib"]),
        "server_uss_mib_per_round": round((after["server"]["uss_mib"] - before["server"]["uss_mib"]) / measured, 3),
        "children_uss_growth_pct": _pct(before["children_uss_mib"], after["children_uss_mib"]),
        "fds_leaked": after["server"]["fds"] - before["server"]["fds"],
        "tasks_leaked": after["server"]["asyncio_tasks"] - before["server"]["asyncio_tasks"],
        "threads_leaked": after["server"]["threads"] - before["server"]["threads"],
        "av_offset_ms_first_minute": first,
        "av_offset_ms_last_minute": last,
        "av_drift_ms": None if first is None or last is None else round(last - first, 2),
        "av_samples": len(watcher.av.samples),
        "server_uss_by_minute": series,
    }


def _pct(a: float, b: float) -> float | None:
    return round(100 * (b - a) / a, 2) if a else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, default=2.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), "Testing memory, one two three."], check=True)
        env = {
            "STREAMER_CACHE_DIR": str(Path(tmp) / "cache"),
            "STREAMER_LOG_LEVEL": "WARNING",
            "STREAMER_IDLE_TIMEOUT_S": "0",
        }
        server = Served("--renderer", "lite", env=env)
        try:
            server.wait_ready()
            pid = server.process.pid
            figures = asyncio.run(soak(server.url, pid, wav.read_bytes(), args.minutes, args.warmup_minutes))
        finally:
            server.stop()
    return {
        "bench": "soak",
        "machine": machine(),
        "minutes": args.minutes,
        "warmup_minutes": args.warmup_minutes,
        **figures,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
