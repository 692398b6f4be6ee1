"""Soak: many sessions and utterances through one server; does its memory keep growing?

Starts `run.py serve` (lite renderer) as its own process, then repeats: open a session, speak,
speak again and interrupt it, close. It reads the resident memory of the server and of its
render workers after a warm-up round and at the end, and prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402
from streamer.client import Client  # noqa: E402
from streamer.testing import free_port  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def memory(pid: int) -> dict[str, float]:
    """Resident memory of the server and of its child processes (the render workers)."""
    return {"server_mib": round(rss_mib(pid), 1), "workers_mib": round(sum(rss_mib(p) for p in children(pid)), 1)}


async def one_round(url: str, speech: bytes) -> None:
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


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("server not ready")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), "Testing memory, one two three."], check=True)
        env = {**os.environ, "STREAMER_CACHE_DIR": str(Path(tmp) / "cache"), "STREAMER_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen(
            [sys.executable, "run.py", "serve", "--port", str(port)], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(url, server)
            speech = wav.read_bytes()
            asyncio.run(one_round(url, speech))
            before = memory(server.pid)
            started = time.monotonic()
            for _ in range(args.rounds):
                asyncio.run(one_round(url, speech))
            after = memory(server.pid)
            with urllib.request.urlopen(url + "/api/stats") as r:
                stats = json.load(r)
        finally:
            server.terminate()
            server.wait(30)
    return {
        "bench": "soak",
        "machine": machine(),
        "rounds": args.rounds,
        "seconds": round(time.monotonic() - started, 1),
        "memory_after_warmup": before,
        "memory_at_end": after,
        "server_growth_mib_per_round": round((after["server_mib"] - before["server_mib"]) / args.rounds, 3),
        "workers_growth_mib_per_round": round((after["workers_mib"] - before["workers_mib"]) / args.rounds, 3),
        "open_sessions_at_end": stats["sessions"]["open"],
        "totalRequests": stats["totalRequests"],
        "completionRate": stats["completionRate"],
    }


if __name__ == "__main__":
    print(json.dumps(main()))
