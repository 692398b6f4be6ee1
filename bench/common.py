"""Shared by the benchmarks: the machine description, one-core pinning, speech, the template."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
TEMPLATE = "astronaut"
SENTENCES = (
    "Hello, how can I help you today?",
    "The weather is lovely this morning.",
    "Please hold on for a moment.",
    "That is a very good question.",
    "Let me check that for you.",
    "Your order will arrive on Monday.",
    "Thank you for waiting so patiently.",
    "I can explain it step by step.",
    "Would you like to hear more?",
    "Have a wonderful afternoon.",
)
"""Short lines for espeak-ng, one to two seconds each."""


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[str]:
    """GPU names from nvidia-smi (never initialises CUDA in this process)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU, cores, GPUs and the versions that shape the figures."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "load_1m": round(os.getloadavg()[0], 2),  # other work on the machine skews the figures
        "gpus": _gpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "av": _version("av"),
        "aiortc": _version("aiortc"),
        "numpy": _version("numpy"),
        "opencv": cv2.__version__,
    }


@contextmanager
def one_core() -> Iterator[int]:
    """Run the block on one CPU core (the last usable one) with one cv2/torch thread; restores both."""
    cores = os.sched_getaffinity(0)
    core = max(cores)
    cv2_threads = cv2.getNumThreads()
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    os.sched_setaffinity(0, {core})
    cv2.setNumThreads(1)
    if torch is not None:
        torch.set_num_threads(1)
    try:
        yield core
    finally:
        os.sched_setaffinity(0, cores)
        cv2.setNumThreads(cv2_threads)
        if torch is not None and torch_threads is not None:
            torch.set_num_threads(torch_threads)


def speech_wav(text: str, path: Path) -> Path:
    """Synthesise `text` with espeak-ng into `path` (a wav)."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt install espeak-ng)")
    subprocess.run(["espeak-ng", "-s", "170", "-w", str(path), text], check=True, capture_output=True)
    return path


def speech16k(workdir: Path, lines: int = 3) -> np.ndarray:
    """float32 16 kHz mono of the first `lines` sentences, one after another."""
    from streamer.audio import decode_file
    from streamer.units import MODEL_RATE

    parts = [decode_file(speech_wav(s, workdir / f"line{i}.wav"), MODEL_RATE) for i, s in enumerate(SENTENCES[:lines])]
    return np.concatenate(parts).astype(np.float32)


def template_dir(dst: Path) -> Path:
    """A templates folder holding only `astronaut` (so start-up prepares nothing else)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut.png", "astronaut.json", "welcome.wav"):
        shutil.copy2(TEMPLATES / name, dst / name)
    return dst


def lite_template(workdir: Path):
    """The `astronaut` template prepared for the lite renderer in a cache under `workdir`."""
    from streamer.avatar.sources import discover
    from streamer.render.lite import LiteRenderer
    from streamer.render.prepare import load_or_prepare

    source = discover(template_dir(workdir / "templates"))[TEMPLATE]
    return load_or_prepare(source, LiteRenderer(), workdir / "cache", progress=False)


def summary(values: list[float]) -> dict[str, float | int | None]:
    """count, p50, p95, max of millisecond figures (None where there are none)."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    a = np.asarray(values, np.float64)
    return {
        "count": len(values),
        "p50": round(float(np.percentile(a, 50)), 1),
        "p95": round(float(np.percentile(a, 95)), 1),
        "max": round(float(a.max()), 1),
    }


async def viewer_offer() -> str:
    """A viewer's SDP offer (video and audio to receive, the events channel), no STUN server."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        pc.createDataChannel("events")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()
