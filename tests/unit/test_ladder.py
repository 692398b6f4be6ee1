"""The adaptive ladder on a fake clock, and the encoders following it."""

from __future__ import annotations

import fractions

import av
import numpy as np

from streamer.webrtc.encoding import EncoderSettings, TunedH264Encoder, TunedVp8Encoder
from streamer.webrtc.ladder import DOWN_HOLD_S, DWELL_S, UP_HOLD_S, Ladder


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def feed(
    ladder: Ladder,
    clock: Clock,
    seconds: float,
    sent_bps: int,
    remb: int,
    loss: float = 0.0,
) -> list[int]:
    """Drive `seconds` of a link: 25 frames a second of `sent_bps`, REMB and loss every 0.2 s."""
    steps = []
    for k in range(int(seconds * 25)):
        clock.t += 0.04
        ladder.on_sent(sent_bps // 8 // 25)
        if k % 5 == 0:
            ladder.on_loss(loss)
            ladder.on_remb(remb)
        steps.append(ladder.index)
    return steps


def test_a_clean_link_keeps_the_top_step():
    clock = Clock()
    ladder = Ladder(1_500_000, clock=clock)
    assert feed(ladder, clock, 30, 900_000, 1_400_000) == [0] * 750
    assert ladder.changes == 0


def test_congestion_steps_down_one_at_a_time_then_a_clean_link_steps_back_up():
    clock = Clock()
    ladder = Ladder(1_500_000, clock=clock)
    feed(ladder, clock, 2, 1_200_000, 1_500_000)  # the receiver's estimate has settled
    down = feed(ladder, clock, 3, 1_200_000, 900_000)  # REMB below what we send: congested
    first = down.index(1) * 0.04
    assert DOWN_HOLD_S <= first <= DOWN_HOLD_S + 1.2  # + the time the sent rate takes to show
    assert ladder.index == 1 and ladder.changes == 1  # 750 kbit/s fits 85 % of 900: one step
    feed(ladder, clock, 3, 600_000, 200_000)  # much worse: straight down, no hold
    assert ladder.index == 2 and ladder.step.bitrate == 375_000 and ladder.step.size(512, 512) == (256, 256)
    up = feed(ladder, clock, 2 * UP_HOLD_S + 2 * DWELL_S + 1, 300_000, 2_000_000)  # clean again
    assert ladder.index == 0 and up[-1] == 0
    assert up.index(1) * 0.04 >= UP_HOLD_S and up.index(0) * 0.04 >= 2 * UP_HOLD_S  # one step at a time
    assert ladder.changes == 4 and ladder.keyframes == 0  # no loss, nothing to repair


def test_loss_alone_steps_down_and_a_failed_probe_waits_longer_before_the_next():
    clock = Clock()
    ladder = Ladder(1_500_000, clock=clock)
    feed(ladder, clock, 3, 900_000, 2_000_000, loss=0.2)
    assert ladder.index == 1 and ladder.keyframes == 0
    feed(ladder, clock, UP_HOLD_S + 1, 500_000, 2_000_000)
    assert ladder.index == 0 and ladder.keyframes == 1  # probed up; the loss's damage repaired
    feed(ladder, clock, DWELL_S + 0.5, 900_000, 2_000_000, loss=0.2)
    assert ladder.index == 1 and ladder.up_hold_s == 2 * UP_HOLD_S  # the probe failed
    feed(ladder, clock, UP_HOLD_S + 1, 500_000, 2_000_000)
    assert ladder.index == 1  # not yet: it waits twice as long now
    feed(ladder, clock, UP_HOLD_S + 1, 500_000, 2_000_000)
    assert ladder.index == 0


def test_a_fixed_ladder_never_moves():
    clock = Clock()
    ladder = Ladder(1_500_000, adaptive=False, clock=clock)
    feed(ladder, clock, 10, 900_000, 100_000, loss=0.5)
    assert ladder.index == 0 and ladder.changes == 0


def frames(count: int, size: int = 256):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size * 3 // 2, size), dtype=np.uint8)
    for n in range(count):
        frame = av.VideoFrame.from_ndarray(np.roll(base, n, axis=1), format="yuv420p")
        frame.pts, frame.time_base = n * 3600, fractions.Fraction(1, 90000)
        yield frame


def test_encoders_take_the_steps_bitrate_and_size_rebuild_once_per_step_and_pass_remb_on():
    for make, name in ((TunedVp8Encoder, "libvpx"), (TunedH264Encoder, "h264")):
        clock = Clock()
        ladder = Ladder(1_000_000, adaptive=False, clock=clock)  # moved by hand below
        encoder = make(EncoderSettings(bitrate=1_000_000), ladder)  # as the session attaches it
        stream = frames(12)
        encoder.encode(next(stream), True)
        top = encoder.codec
        assert (top.width, top.bit_rate) == (256, 1_000_000)
        encoder.target_bitrate = 300_000  # REMB: to the ladder, not the encoder
        assert ladder.remb == 300_000 and encoder.target_bitrate == 1_000_000
        encoder.encode(next(stream))
        assert encoder.codec is top
        ladder.index = 2
        payloads, timestamp = encoder.encode(next(stream))
        low = encoder.codec
        assert low is not top and (low.width, low.height, low.bit_rate) == (
            128,
            128,
            250_000,
        )
        assert timestamp == 2 * 3600 and payloads
        decoder = av.CodecContext.create(name, "r")
        decoded = []
        for frame in stream:
            frame.pict_type = av.video.frame.PictureType.I if not decoded else av.video.frame.PictureType.NONE
            for packet in low.encode(encoder._follow(frame)):
                decoded += decoder.decode(packet)
        assert encoder.codec is low and decoded and decoded[0].width == 128


def test_a_receiver_estimate_ramping_up_from_low_is_not_congestion():
    clock = Clock()
    ladder = Ladder(1_500_000, clock=clock)
    for second in range(8):  # Chromium starts its estimate near 300 kbit/s and ramps it up
        feed(ladder, clock, 1, 900_000, 300_000 + 150_000 * second)
    assert ladder.index == 0 and ladder.changes == 0
    feed(ladder, clock, 3, 900_000, 300_000)  # once it has reached what we send, a fall is
    assert ladder.index > 0


def test_speech_after_a_still_face_is_no_congestion_while_the_estimate_catches_up():
    """Capped encoders send little for a still face and more for speech: the receiver's estimate
    then ramps up behind the new rate, which is no reason to step down."""
    clock = Clock()
    ladder = Ladder(1_500_000, clock=clock)
    feed(ladder, clock, 4, 150_000, 250_000)  # idle: the estimate has settled above the rate
    for second in range(10):  # speech: 1.2 Mbit/s at once, the estimate +15 % a second
        feed(ladder, clock, 1, 1_200_000, int(250_000 * 1.15**second))
    assert ladder.index == 0 and ladder.changes == 0
    feed(ladder, clock, 3, 1_200_000, 300_000)  # the estimate falls: that is congestion
    assert ladder.index > 0
