"""Every private part of aiortc that streamer/webrtc touches (webrtc/hooks.py), against the
installed aiortc. If this fails, aiortc moved them: re-read aiortc's rtcrtpsender.py and
codecs/{h264,vpx}.py before moving the pin in pyproject.toml."""

from __future__ import annotations

import importlib
import inspect
from importlib import metadata

from aiortc import RTCConfiguration, RTCPeerConnection, rtcrtpreceiver, rtcrtpsender
from aiortc.codecs.h264 import H264Encoder

from streamer.webrtc import hooks


def test_aiortc_is_the_pinned_minor():
    version = metadata.version("aiortc")
    assert version.startswith("1.16."), f"aiortc {version}: streamer/webrtc was written against 1.16"
    pin = next(r for r in metadata.requires("streamer") or [] if r.startswith("aiortc"))  # as installed
    assert ">=1.16" in pin and "<1.17" in pin, pin


async def test_every_private_name_is_still_there():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        sender = pc.addTransceiver("video", direction="sendonly").sender  # instance attributes count
        receiver = pc.addTransceiver("audio", direction="sendrecv").receiver
        for owner, names in hooks.PRIVATE.items():
            module_name, _, class_name = owner.partition(":")
            target = importlib.import_module(module_name)
            if owner == hooks.SENDER:
                target = sender
            elif owner == hooks.RECEIVER:
                target = receiver
            elif class_name:
                target = getattr(target, class_name)()
            for name in names:
                assert hasattr(target, name), f"{owner}.{name} is gone"
    finally:
        await pc.close()


def test_the_sender_still_keeps_our_encoder_and_hands_it_keyframe_requests_and_remb():
    source = inspect.getsource(rtcrtpsender.RTCRtpSender)
    for line in hooks.SENDER_SOURCE:
        assert line in source, line
    assert list(inspect.signature(H264Encoder._encode_frame).parameters) == ["self", "frame", "force_keyframe"]
    module, call = hooks.ICE_SOURCE
    assert call in inspect.getsource(importlib.import_module(module))


def test_the_receiver_still_hands_its_jitter_buffer_each_depayloaded_packet():
    source = inspect.getsource(rtcrtpreceiver.RTCRtpReceiver)
    for line in hooks.RECEIVER_SOURCE:
        assert line in source, line


async def test_wrapped_handlers_see_nacks_and_keyframe_requests_then_call_aiortcs():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    seen: list[object] = []
    try:
        sender = pc.addTransceiver("video", direction="sendonly").sender

        async def retransmit(original, sequence_number: int) -> None:
            seen.append(sequence_number)
            await original(sequence_number)  # nothing in aiortc's history: a no-op

        def keyframe(original) -> None:
            seen.append("pli")
            original()

        hooks.wrap_handlers(sender, retransmit, keyframe)
        await sender._retransmit(7)
        sender._send_keyframe()
        assert seen == [7, "pli"] and sender._RTCRtpSender__force_keyframe is True
    finally:
        await pc.close()
