"""Both video codecs end to end, and the headless client's command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from streamer.config import Settings
from streamer.headless.client import Client
from tests.integration.conftest import live_server
from tests.served import same_streamer


@pytest.mark.parametrize("codec", ["h264", "vp8"])
async def test_each_video_codec_streams_the_face(cache_dir, codec):
    with live_server(Settings(cache_dir=cache_dir, video_codec=codec)) as server:
        client = Client(server.url)
        try:
            await client.connect("astronaut")
            await client.wait_frames(25)
            video = client.answer_sdp.split("m=video", 1)[1].split("m=", 1)[0]
            first_payload = video.splitlines()[0].split()[2]
            assert f"a=rtpmap:{first_payload} {codec.upper()}/90000" in video
            assert client.received.size == (512, 512)
            frame = client.received.frames[-1]
            assert frame.std() > 20  # a picture, not a blank
        finally:
            await client.close()


def _first_video_codec(answer_sdp: str) -> str:
    video = answer_sdp.split("m=video", 1)[1].split("m=", 1)[0]
    payload = video.splitlines()[0].split()[2]
    return re.search(rf"^a=rtpmap:{payload} ([^/]+)/", video, re.MULTILINE).group(1)


async def test_auto_sends_h264_when_the_viewer_offers_it_after_vp8(server):
    """aiortc's offer (like Chromium's) lists VP8 first; `auto` still answers, and sends, H.264."""
    client = Client(server.url)
    try:
        await client.connect("astronaut")
        offered = client.pc.localDescription.sdp
        assert _first_video_codec(offered) == "VP8" and "H264/90000" in offered
        assert _first_video_codec(client.answer_sdp) == "H264"
        await client.wait_frames(10)  # aiortc sends the answer's first codec: H.264 frames decoded here
        assert client.received.frames[-1].std() > 20
    finally:
        await client.close()


def test_client_command_prints_its_figures(server, speech_wav, tmp_path):
    record = tmp_path / "got.mp4"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer",
            "client",
            "--server",
            server.url,
            "--template",
            "astronaut",
            "--speak",
            str(speech_wav),
            "--record",
            str(record),
            "--json",
        ],
        cwd=tmp_path,
        env=same_streamer(),  # the installed package or the checkout's, whichever this test imports
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["frames"] > 100 and 20 < figures["fps"] < 30
    assert figures["speak_to_first_speech_frame_ms"] is not None
    assert figures["speak_to_first_speech_audio_ms"] is not None
    assert figures["av_offset_ms"] is not None and abs(figures["av_offset_ms"]) <= 80
    # Stalls are the server's count for this session: an int, and far fewer than the speech's units.
    assert figures["renderer"] == "lite" and isinstance(figures["stalls"], int) and 0 <= figures["stalls"] < 25
    import av

    with av.open(str(record)) as container:
        kinds = sorted(s.type for s in container.streams)
        assert kinds == ["audio", "video"]
        assert float(container.duration or 0) / 1e6 > 5
