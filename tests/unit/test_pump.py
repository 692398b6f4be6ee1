"""The media pump on a fake clock: one tick per 40 ms, both tracks stamped from one counter."""

import asyncio

import av
import numpy as np

from streamer.core.clock import FakeClock
from streamer.core.playout import Playout
from streamer.core.segmenter import Window
from streamer.core.utterance import Utterance
from streamer.webrtc.opus import LeanOpusEncoder
from streamer.webrtc.tracks import MediaPump


def compose(unit):
    frame = np.zeros((96, 64), np.uint8)  # I420 of 64×64
    frame[:64] = unit.tick % 256
    return frame


async def test_pump_ticks_only_when_the_clock_moves_and_pairs_audio_with_video():
    clock = FakeClock()
    playout = Playout(lambda e: None, lead_units=0)
    speech = Utterance("u", 0)
    speech.add_audio(np.repeat(np.arange(1, 4, dtype=np.int16) * 100, 1920))
    speech.add_window(Window(0, 3, np.zeros((3, 256, 256, 3), np.uint8)))
    speech.end()
    playout.enqueue(speech)
    playout.assign_base(speech)
    seen = []

    def tick():
        unit = playout.tick()
        seen.append((unit.kind, clock.now()))
        return unit

    pump = MediaPump(tick, compose, clock)

    video = [await pump.video.recv()]  # the first recv starts the pump
    assert len(seen) == 1  # tick 0 is due at once; nothing more until the clock moves
    for _ in range(4):
        await clock.advance(0.04)
        video.append(await pump.video.recv())
    audio = [await pump.audio.recv() for _ in range(10)]

    assert [k for k, _ in seen] == ["speech", "speech", "speech", "idle", "idle"]
    assert [round(due, 2) for _, due in seen] == [0.0, 0.04, 0.08, 0.12, 0.16]
    assert [f.pts for f in video] == [0, 3600, 7200, 10800, 14400]
    assert [f.pts for f in audio] == [i * 960 for i in range(10)]
    assert all(f.samples == 960 and f.sample_rate == 48000 for f in audio)
    # Unit n's two audio packets carry unit n's samples.
    levels = [int(f.to_ndarray()[0, 0]) for f in audio]
    assert levels == [100, 100, 200, 200, 300, 300, 0, 0, 0, 0]
    await pump.stop()


async def test_a_track_that_is_not_read_drops_its_oldest_frames_instead_of_growing():
    clock = FakeClock()
    pump = MediaPump(Playout(lambda e: None).tick, compose, clock)
    for _ in range(30):  # read audio only, as a viewer whose video stalled would
        await pump.audio.recv()
        await pump.audio.recv()
        await clock.advance(0.04)
    assert pump.video._queue.qsize() <= 8 and pump.video.dropped > 0
    frame = await pump.video.recv()
    assert frame.pts > 0  # the oldest were dropped, not the newest
    await pump.stop()


async def test_with_opus_the_audio_track_carries_packets_the_sender_packs_as_stamped():
    clock = FakeClock()
    playout = Playout(lambda e: None, lead_units=0)
    speech = Utterance("u", 0)
    t = np.arange(1920 * 3) / 48000
    speech.add_audio((8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16))
    speech.add_window(Window(0, 3, np.zeros((3, 256, 256, 3), np.uint8)))
    speech.end()
    playout.enqueue(speech)
    playout.assign_base(speech)
    pump = MediaPump(playout.tick, compose, clock)
    pump.encode_audio()
    packets = []
    for _ in range(12):
        await pump.video.recv()
        packets += [await pump.audio.recv(), await pump.audio.recv()]
        await clock.advance(0.04)
    encoder = LeanOpusEncoder()  # what aiortc's sender holds: it packs, it encodes nothing
    packed = [encoder.pack(p) for p in packets]
    assert [stamp for _, stamp in packed] == [i * 960 for i in range(24)]
    decoder = av.CodecContext.create("opus", "r")
    pcm = np.concatenate([f.to_ndarray()[0] for p in packets for f in decoder.decode(p)])
    assert len(pcm) == 24 * 960
    assert np.abs(pcm[960 : 5 * 960]).max() > 0.1  # the speech
    assert np.abs(pcm[12 * 960 :]).max() < 0.01  # then the idle silence
    assert pump._opus is not None and pump._opus.reused > 0  # settled silence is not encoded
    assert encoder.encoded == 0
    await pump.stop()


async def test_a_pump_that_dies_reports_its_task_name_and_exception():
    clock = FakeClock()
    failures = []

    def broken():
        raise RuntimeError("no unit")

    pump = MediaPump(broken, compose, clock, on_failure=lambda name, exc: failures.append((name, exc)))
    pump.start()
    task = pump._task
    assert task is not None
    await asyncio.wait([task])
    assert [(name, str(exc)) for name, exc in failures] == [("media-pump", "no unit")]
