"""The C# client (examples/dotnet) built with Mono's mcs, run against a live server.

The viewer is an aiortc peer connection made here: the C# program opens the session with its
offer (as an ASP.NET backend would for a browser) and then speaks to it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from streamer.audio import decode_file
from streamer.config import Settings
from streamer.headless.client import Client
from tests.integration.conftest import live_server
from tests.integration.test_session import normalised_xcorr_peak

if TYPE_CHECKING:
    from tests.integration.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "dotnet"
TEMPLATE = "astronaut"


def _net_http() -> bool:
    """Whether Mono's System.Net.Http assembly is there (Debian: libmono-system-net-http4.0-cil)."""
    mcs = shutil.which("mcs")
    prefix = Path(mcs).resolve().parent.parent if mcs else None
    return prefix is not None and any(prefix.glob("lib/mono/4.5/System.Net.Http.dll"))


pytestmark = pytest.mark.skipif(
    not (shutil.which("mono") is not None and _net_http()),
    reason="Mono (mcs, mono, libmono-system-net-http4.0-cil) is not installed",
)


def build_program(out: Path) -> Path:
    """Compiles examples/dotnet with Mono's mcs into `out` (asserting a clean build)."""
    build = subprocess.run(
        ["mcs", "-r:System.Net.Http.dll", f"-out:{out}", *sorted(str(p) for p in EXAMPLE.glob("*.cs"))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "warning" not in build.stdout, build.stdout
    return out


def dotnet_available() -> bool:
    return shutil.which("mono") is not None and _net_http()


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_program(tmp_path_factory.mktemp("dotnet") / "dh.exe")


async def run(program: Path, *args: str, ok: bool = True, key: str | None = None) -> dict[str, str]:
    """Runs the program; returns its `name=value` lines (or stderr as `error` when it failed)."""
    env = {**os.environ, "DIGITAL_HUMAN_KEY": key} if key else None
    process = await asyncio.create_subprocess_exec(
        "mono", str(program), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert (process.returncode == 0) == ok, f"exit {process.returncode}: {out.decode()} {err.decode()}"
    if not ok:
        return {"error": err.decode()}
    lines = [line.split("=", 1) for line in out.decode().splitlines() if "=" in line]
    pairs: dict[str, str] = {}
    for name, value in lines:
        pairs[name] = f"{pairs[name]}\n{value}" if name in pairs else value
    return pairs


async def test_templates(program: Path, server: LiveServer) -> None:
    listed = await run(program, "templates", server.url)
    assert listed["renderer"] in ("lite", "musetalk")
    assert any(line.startswith(f"{TEMPLATE} kind=") for line in listed["template"].splitlines())


async def test_open_speak_state_and_stats(program: Path, server: LiveServer, tmp_path: Path) -> None:
    url = server.url
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    pc.createDataChannel("events")
    connected = asyncio.Event()
    pc.on("connectionstatechange", lambda: connected.set() if pc.connectionState == "connected" else None)
    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers before returning
    offer, answer = tmp_path / "offer.sdp", tmp_path / "answer.sdp"
    offer.write_text(pc.localDescription.sdp)
    try:
        opened = await run(program, "open", url, TEMPLATE, str(offer), str(answer))
        session, token = opened["session_id"], opened["token"]
        await pc.setRemoteDescription(RTCSessionDescription(answer.read_text(), "answer"))
        await asyncio.wait_for(connected.wait(), 20)

        spoken = await run(program, "speak", url, session, token, str(ROOT / "templates" / "welcome.wav"))
        assert spoken["utterance_id"] and abs(float(spoken["duration_s"]) - 6.12) < 0.1
        state = await run(program, "state", url, session, token)
        assert state["session_id"] == session and state["renderer"] in ("lite", "musetalk")
        # 6 s of speech were just queued: the welcome clip or the speech plays, never idle.
        assert state["state"] in ("welcome", "speaking") and int(state["utterances"]) == 1
        assert float(state["queued_seconds"]) > 0
        await run(program, "interrupt", url, session, token)
        after = await run(program, "state", url, session, token)
        assert after["state"] == "idle" and float(after["queued_seconds"]) == 0

        refused = await run(program, "speak", url, session, "wrong-token", str(offer), "audio/wav", ok=False)
        assert "401" in refused["error"]

        stats = await run(program, "stats", url)
        assert float(stats["totalRequests"]) >= 1
    finally:
        await pc.close()


@pytest.mark.parametrize(
    ("suffix", "content_type", "dtype"),
    [(".pcm", "audio/pcm;rate=16000", "<i2"), (".l16", "audio/L16;rate=16000", ">i2")],
)
async def test_raw_pcm_from_csharp_is_heard_as_sent(
    program: Path, server: LiveServer, tmp_path: Path, speech_wav: Path, suffix: str, content_type: str, dtype: str
) -> None:
    """s16le goes as audio/pcm, big-endian as audio/L16 (RFC 2586): both are heard as the speech."""
    sent = decode_file(speech_wav, 16000)
    raw = tmp_path / f"speech{suffix}"
    raw.write_bytes((sent * 32767).astype(dtype).tobytes())
    viewer = Client(server.url)
    try:
        await viewer.connect(TEMPLATE)
        await viewer.wait_event("welcome_ended", timeout=30)
        spoken = await run(program, "speak", server.url, viewer.session_id, viewer.token, str(raw), content_type)
        await viewer.wait_event("speaking_started", spoken["utterance_id"], timeout=15)
        await viewer.wait_event("speaking_ended", spoken["utterance_id"], timeout=30)
        r = viewer.received
        heard = r.audio_between(viewer.opened_at, float("inf"))
        reference = decode_file(speech_wav, r.audio_rate)
        assert normalised_xcorr_peak(heard.astype(np.float32), reference) > 0.6
    finally:
        await viewer.close()


KEY = "dotnet-backend-key-0123456789"


@pytest.fixture(scope="module")
def keyed(cache_dir: Path):
    with live_server(Settings(cache_dir=cache_dir, key=KEY, max_sessions=2)) as live:
        yield live


async def test_the_backend_mints_a_grant_and_the_viewer_needs_no_key(program: Path, keyed: LiveServer) -> None:
    minted = await run(program, "grant", keyed.url, TEMPLATE, "30", key=KEY)
    assert minted["grant"].count(".") == 2 and int(minted["expires"]) > 0
    refused = await run(program, "grant", keyed.url, TEMPLATE, ok=False)  # no key: no grant
    assert "401" in refused["error"]
    viewer = Client(keyed.url, key=minted["grant"])
    try:
        await viewer.connect(TEMPLATE)
        await viewer.wait_frames(5)
        again = Client(keyed.url, key=minted["grant"])
        with pytest.raises(RuntimeError, match="401"):
            await again.connect(TEMPLATE)
        await again.close()
    finally:
        await viewer.close()


async def test_the_csharp_audio_socket_sends_its_token_as_a_subprotocol(program: Path, server: LiveServer) -> None:
    viewer = Client(server.url)
    try:
        await viewer.connect(TEMPLATE)
        opened = await run(program, "socket", server.url, viewer.session_id, viewer.token)
        assert opened["protocol"] == "streamer-audio" and '"type": "started"' in opened["reply"]
    finally:
        await viewer.close()
