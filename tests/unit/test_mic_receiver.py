"""The microphone's receiver holds back no audio frame (aiortc's holds four: 80 ms); a viewer's
can be told to hold one."""

from __future__ import annotations

import asyncio

from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

from streamer.webrtc.mic import MIC_HOLD, hold_less


def _packet(seq: int) -> RtpPacket:
    packet = RtpPacket(payload_type=111, sequence_number=seq % 0x10000, timestamp=seq * 960, payload=b"x")
    packet._data = b"x"  # type: ignore[attr-defined]  # the receiver sets it on each packet it buffers
    return packet


def _released(buffer: object, sequence: list[int]) -> list[int]:
    """The frames (by timestamp / 960) the buffer gives out as one-packet frames arrive in `sequence`."""
    out = []
    for seq in sequence:
        _, frame = buffer.add(_packet(seq))  # type: ignore[attr-defined]
        if frame is not None:
            out.append(frame.timestamp // 960)
    return out


def _held(frames: int | None, sequence: list[int]) -> list[int]:
    async def main() -> list[int]:
        pc = RTCPeerConnection()
        try:
            receiver = pc.addTransceiver("audio", direction="sendrecv").receiver
            if frames is not None:
                hold_less(receiver, frames)
            return _released(receiver._RTCRtpReceiver__jitter_buffer, sequence)  # type: ignore[attr-defined]
        finally:
            await pc.close()

    return asyncio.run(main())


def test_a_microphone_frame_comes_out_as_its_packet_arrives() -> None:
    assert _held(None, [0, 1, 2]) == []  # aiortc's default waits for four more frames
    assert MIC_HOLD == 0
    assert _held(MIC_HOLD, [0, 1, 2]) == [0, 1, 2]
    assert _held(1, [0, 1, 2]) == [0, 1]  # a viewer's `audio_hold=1`: out when the next arrives


def test_late_and_repeated_packets_are_dropped_across_the_sequence_wrap() -> None:
    assert _held(MIC_HOLD, [65534, 65535, 65535, 65533, 65536, 65538, 65537, 65539]) == [
        65534,
        65535,
        65536,
        65538,
        65539,
    ]


def test_a_sender_that_starts_its_numbers_again_far_behind_is_heard_again() -> None:
    restarted = [5000, 5001, 5002, 40, 41, 39, 42]  # from 40 a new start; 39 is then late
    assert _held(MIC_HOLD, restarted) == [5000, 5001, 5002, 40, 41, 42]
    assert _held(MIC_HOLD, [5000, 5001, 4902, 4901]) == [5000, 5001, 4901]  # 99 behind: late; 100: anew


def test_a_receiver_without_the_expected_buffer_is_left_alone() -> None:
    class Other:
        pass

    other = Other()
    hold_less(other)  # type: ignore[arg-type]
    assert vars(other) == {}
