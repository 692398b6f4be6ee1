"""The microphone's receiver holds back one audio frame, not aiortc's four (80 ms)."""

from __future__ import annotations

import asyncio

from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

from streamer.webrtc.mic import MIC_PREFETCH, hold_less


def _packet(seq: int) -> RtpPacket:
    packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, payload=b"x")
    packet._data = b"x"  # type: ignore[attr-defined]  # the receiver sets it on each packet it buffers
    return packet


def _released(buffer: object, packets: int) -> list[int]:
    """Timestamps of the frames the buffer gives out as `packets` one-packet frames arrive."""
    out = []
    for seq in range(packets):
        _, frame = buffer.add(_packet(seq))  # type: ignore[attr-defined]
        if frame is not None:
            out.append(frame.timestamp // 960)
    return out


def test_a_microphone_frame_comes_out_when_the_next_one_arrives() -> None:
    async def main() -> list[int]:
        pc = RTCPeerConnection()
        try:
            receiver = pc.addTransceiver("audio", direction="sendrecv").receiver
            before = _released(receiver._RTCRtpReceiver__jitter_buffer, 3)  # type: ignore[attr-defined]
            assert before == []  # aiortc's default waits for four more frames
            hold_less(receiver)
            return _released(receiver._RTCRtpReceiver__jitter_buffer, 3)  # type: ignore[attr-defined]
        finally:
            await pc.close()

    assert MIC_PREFETCH == 1
    assert asyncio.run(main()) == [0, 1]


def test_a_receiver_without_the_expected_buffer_is_left_alone() -> None:
    class Other:
        pass

    other = Other()
    hold_less(other)  # type: ignore[arg-type]
    assert vars(other) == {}
