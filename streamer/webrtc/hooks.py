"""Every private part of aiortc (and of aioice's use of asyncio) this package touches, in one
place, and the two ways it touches the RTP sender.

aiortc has no setting for its encoders, so a session hands each of its senders our encoder
before the first frame (`set_encoder`): aiortc keeps an encoder it finds there, passes it
`force_keyframe` on PLI and sets its `target_bitrate` on REMB, so keyframe requests and the
receiver's estimate reach our encoder (and the session's ladder) with no process-wide swap. The
link controller wraps one sender's NACK and PLI handlers (`wrap_handlers`). pyproject pins aiortc to
one minor version; tests/unit/test_webrtc_hooks.py checks every name below against it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

SENDER = "aiortc.rtcrtpsender:RTCRtpSender"
SENDER_ENCODER = "_RTCRtpSender__encoder"
"""The sender's encoder, built by aiortc from the codec on the first frame when still None."""
RECEIVER = "aiortc.rtcrtpreceiver:RTCRtpReceiver"
RECEIVER_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
"""The receiver's jitter buffer, replaced for a microphone by one that holds back less (mic.py)."""
RECEIVER_SOURCE = (
    "packet._data = depayload(codec, packet.payload)",
    "self.__jitter_buffer.add(packet)",
)
"""Lines of RTCRtpReceiver's source `mic.PacketFrames` relies on: each packet reaches the jitter
buffer with its depayloaded frame in `_data`."""
PRIVATE: dict[str, tuple[str, ...]] = {
    SENDER: (SENDER_ENCODER, "_retransmit", "_send_keyframe"),
    RECEIVER: (RECEIVER_JITTER_BUFFER,),
    "aiortc.rtp": ("compute_audio_level_dbov",),
    "aiortc.codecs.h264:H264Encoder": ("_encode_frame", "_split_bitstream", "buffer_data", "buffer_pts", "codec"),
    "aiortc.codecs.vpx:Vp8Encoder": ("_packetize", "picture_id", "codec"),
}
"""Owner (`module` or `module:Class`, whose instances are checked) → the private names used:
the sender's encoder slot and NACK/PLI handlers (hooks.py, link.py), the microphone receiver's
jitter buffer (mic.py), the audio-level function
(encoding.install), the encoders' internals our subclasses lean on (encoding.py)."""
SENDER_SOURCE = (
    "if self.__encoder is None:",
    "self.__encoder.encode, data, force_keyframe",
    "self.__encoder.target_bitrate = bitrate",
    "rtp.compute_audio_level_dbov(data)",
)
"""Lines of RTCRtpSender's source the hooks rely on: an encoder found in the slot is kept, it
gets the keyframe requests and the REMB estimate, and audio levels are looked up by module."""
ICE_SOURCE = ("aioice.ice", "loop.create_datagram_endpoint(")
"""ports.py ranges the loop's `create_datagram_endpoint`, which aioice calls for each host candidate."""


def set_encoder(sender: Any, encoder: Any) -> None:
    """`sender` encodes with `encoder` from its first frame on (call before the media starts)."""
    setattr(sender, SENDER_ENCODER, encoder)


def encoder_of(sender: Any) -> Any:
    return getattr(sender, SENDER_ENCODER)


def wrap_handlers(
    sender: Any,
    retransmit: Callable[[Callable[[int], Awaitable[None]], int], Awaitable[None]],
    keyframe: Callable[[Callable[[], None]], None],
) -> None:
    """Route `sender`'s NACK resends and keyframe requests (PLI/FIR) through `retransmit(original,
    sequence_number)` and `keyframe(original)`, on this instance only."""
    original_retransmit, original_keyframe = sender._retransmit, sender._send_keyframe

    async def wrapped_retransmit(sequence_number: int) -> None:
        await retransmit(original_retransmit, sequence_number)

    def wrapped_keyframe() -> None:
        keyframe(original_keyframe)

    sender._retransmit, sender._send_keyframe = wrapped_retransmit, wrapped_keyframe
