"""The media's UDP ports stay in `ice_port_min..ice_port_max` (real aiortc gathering on loopback)."""

from __future__ import annotations

import asyncio
import re
import socket

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from streamer.config import Settings
from streamer.errors import BadInput, Busy
from streamer.webrtc import ports


def _free_range(width: int) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + width < 65000:
            return base
    raise RuntimeError("no port range")


async def test_host_candidates_are_bound_inside_the_range():
    low = _free_range(20)
    ports.install(asyncio.get_running_loop(), low, low + 19)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        found = [int(p) for p in re.findall(r"a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ host", pc.localDescription.sdp)]
        assert found and all(low <= p <= low + 19 for p in found)
    finally:
        await pc.close()


async def test_a_full_range_is_busy_and_other_endpoints_are_untouched():
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        ports.install(loop, port, port)
        with pytest.raises(Busy, match="in use"):
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol,
            remote_addr=("127.0.0.1", port),  # a connected one keeps any port
        )
        transport.close()


def test_the_range_is_checked_at_start():
    with pytest.raises(BadInput, match="ice_port_min"):
        Settings(ice_port_min=5000, ice_port_max=4000).validate()
    assert Settings(ice_port_min=40000, ice_port_max=40100).validate().ice_port_max == 40100
