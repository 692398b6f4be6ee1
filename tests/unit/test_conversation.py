"""The conversation core on a fake clock with a fake pool: no network, no aiortc, no worker.

`test_the_core_runs_with_the_transport_unimportable` runs this whole file again in a fresh
interpreter where importing aiortc or aiohttp fails.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from streamer.config import Settings
from streamer.core.clock import FakeClock
from streamer.core.conversation import Conversation
from streamer.core.events import Interrupted, SpeakingEnded, SpeakingStarted, WelcomeEnded
from streamer.errors import BadInput, Busy, NotFound
from streamer.metrics import Metrics
from streamer.render.base import job_audio
from streamer.units import MODEL_SAMPLES_PER_UNIT, OUT_SAMPLES_PER_UNIT
from tests.fakes import FakePool, play_ticks, tiny_template

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Settings(first_window_s=0.2, window_s=1.0, stream_idle_s=2.0)


def speech(units: int, level: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """16 kHz noise, and 48 kHz audio whose unit k holds the int16 value level + k + 1."""
    rng = np.random.default_rng(units)
    audio16k = (0.3 * rng.standard_normal(units * MODEL_SAMPLES_PER_UNIT)).astype(np.float32)
    values = np.repeat(np.arange(level + 1, level + units + 1), OUT_SAMPLES_PER_UNIT)
    return audio16k, (values / 32767.0).astype(np.float32)


class Harness:
    def __init__(self, pool_kw: dict | None = None, welcome_units: int = 0, settings: Settings = SETTINGS):
        self.clock = FakeClock()
        self.pool = FakePool(self.clock, **(pool_kw or {}))
        self.events: list = []
        self.core = Conversation(
            "s1",
            tiny_template(welcome_units=welcome_units),
            self.pool,
            settings,
            self.clock,
            Metrics(),
            self.events.append,
        )
        self.core.start()

    async def play(self, ticks: int) -> list:
        return await play_ticks(self.core, self.clock, ticks)

    def kinds(self) -> list[str]:
        return [e.type for e in self.events]

    async def close(self) -> None:
        await self.core.close()


def speech_units(units: list) -> list:
    return [u for u in units if u.kind == "speech"]


async def test_welcome_then_idle_then_speech_then_idle():
    h = Harness(welcome_units=3)
    units = await h.play(5)
    assert [u.kind for u in units] == ["welcome"] * 3 + ["idle"] * 2
    assert all(int(u.audio[0]) == 7 for u in units[:3])
    assert h.kinds() == ["welcome_ended"]
    assert h.core.describe()["state"] == "idle"

    utterance = h.core.speak(*speech(10))
    units = await h.play(20)
    kinds = [u.kind for u in units]
    assert "speech" in kinds and kinds[-1] == "idle"
    assert kinds.count("speech") == 10 and "stall" not in kinds
    assert h.kinds() == ["welcome_ended", "speaking_started", "speaking_ended"]
    assert h.events[1] == SpeakingStarted(utterance.id, h.events[1].tick)
    assert isinstance(h.events[2], SpeakingEnded) and h.events[2].duration_s == 0.4
    await h.close()


async def test_utterances_play_in_order_with_their_own_audio_and_continuing_positions():
    h = Harness()
    first = h.core.speak(*speech(30, level=0))
    second = h.core.speak(*speech(20, level=100))
    played = speech_units(await h.play(70))
    assert [u.utterance_id for u in played] == [first.id] * 30 + [second.id] * 20
    assert [int(u.audio[0]) for u in played] == list(range(1, 31)) + list(range(101, 121))
    positions = [u.position for u in played]
    assert positions == list(range(positions[0], positions[0] + 50))  # the loop carries on
    # every crop is the one rendered for the position it is shown at
    assert all(int(u.crop[0, 0, 0]) == u.position % 256 for u in played)
    assert all(job.session_id == "s1" for job in h.pool.jobs)
    await h.close()


async def test_windows_are_sent_in_order_and_tile_the_utterance():
    h = Harness()
    utterance = h.core.speak(*speech(80))
    await h.play(3)
    starts = [int(job.positions[0]) for job in h.pool.jobs]
    assert starts == sorted(starts)
    covered = np.concatenate([job.positions for job in h.pool.jobs])
    base = utterance.base_position
    assert covered.tolist() == list(range(base, base + 80))[: len(covered)]
    await h.play(80)
    assert sum(job.frames for job in h.pool.jobs) == 80
    await h.close()


async def test_windows_finishing_out_of_order_still_play_in_order():
    # the first window is slow, the later ones fast: they finish first and wait their turn
    h = Harness()
    h.pool.delay = lambda job: 0.5 if len(h.pool.jobs) == 1 else 0.01
    h.core.speak(*speech(40))
    units = await h.play(80)
    played = speech_units(units)
    assert len(played) == 40
    assert [int(u.audio[0]) for u in played] == list(range(1, 41))
    assert all(int(u.crop[0, 0, 0]) == u.position % 256 for u in played)
    assert h.pool.rendered[0].positions[0] > h.pool.jobs[0].positions[0]  # finished out of order
    await h.close()


@pytest.mark.parametrize("how", ["fail", "die"])
async def test_a_failed_window_plays_its_audio_over_the_still_face_and_is_counted(how):
    h = Harness()
    setattr(h.pool, how, lambda job: len(h.pool.jobs) > 1 and job is h.pool.jobs[1])
    h.core.speak(*speech(30))
    played = speech_units(await h.play(50))
    assert [int(u.audio[0]) for u in played] == list(range(1, 31))  # all of the audio is heard
    still = [u for u in played if u.crop is None]
    assert len(still) == 5  # the second window (units 5 … 9)
    assert [int(u.audio[0]) for u in still] == [6, 7, 8, 9, 10]
    described = h.core.describe()
    assert described["render_failures"] == 1 and described["failed_units"] == 5
    assert h.kinds() == ["speaking_started", "speaking_ended"]
    await h.close()


async def test_interrupt_mid_window_is_idle_next_tick_and_drops_renders_in_flight():
    h = Harness({"delay": lambda job: 0.0 if job.first_unit == 0 else 5.0})
    first = h.core.speak(*speech(60))
    second = h.core.speak(*speech(10))
    played = speech_units(await h.play(8))
    assert len(played) >= 3 and len(h.pool.jobs) >= 2  # later windows are still rendering
    in_flight = list(h.pool.jobs[1:])
    events = h.core.interrupt()
    assert events == [Interrupted(first.id, round(len(played) / 25, 3)), Interrupted(second.id, 0.0)]
    assert h.kinds()[-2:] == ["interrupted", "interrupted"]  # emitted once each
    assert h.pool.cancelled == ["s1"]
    after = await h.play(200)
    assert after[0].kind == "idle" and all(u.kind == "idle" for u in after)
    assert not {id(j) for j in in_flight} & {id(j) for j in h.pool.rendered}  # never rendered
    assert h.core.describe()["queued_seconds"] == 0
    # speech after an interrupt plays normally
    third = h.core.speak(*speech(5))
    played = speech_units(await h.play(15))
    assert [u.utterance_id for u in played] == [third.id] * 5
    await h.close()


async def stream_in_real_time(seconds: float) -> Harness:
    h = Harness()
    stream = h.core.open_stream(16000)
    rng = np.random.default_rng(3)
    pcm = (8000 * rng.standard_normal(int(16000 * seconds))).astype("<i2")
    chunk = 1600  # 100 ms of 16 kHz s16le, sent in real time
    for i in range(0, len(pcm), chunk):
        stream.push(pcm[i : i + chunk].tobytes())
        await h.play(2)
        await h.clock.advance(0.02)
    stream.end()
    await h.play(100)
    await h.close()
    return h


async def test_a_live_stream_below_low_water_gets_a_window_cut_at_once(monkeypatch):
    cut = await stream_in_real_time(4.0)
    monkeypatch.setattr("streamer.core.livestream.LOW_WATER_UNITS", 0)
    planned = await stream_in_real_time(4.0)
    assert sum(j.frames for j in cut.pool.jobs) == sum(j.frames for j in planned.pool.jobs) == 100
    assert len(cut.pool.jobs) > len(planned.pool.jobs)  # extra windows, cut on demand
    assert cut.core.describe()["starved"] < planned.core.describe()["starved"]
    assert cut.kinds() == planned.kinds() == ["speaking_started", "speaking_ended"]


async def test_a_stream_that_sends_nothing_more_ends_after_stream_idle_s_and_the_queue_moves_on():
    h = Harness()
    stream = h.core.open_stream(16000)
    stream.push((np.full(16000, 3000, np.int16)).astype("<i2").tobytes())  # 1 s of audio
    after = h.core.speak(*speech(10))
    await h.play(40)  # 1.6 s: the stream's audio plays, then it starves, then it is still open
    assert h.core.stream is stream and not stream.ended
    await h.play(40)  # past 2 s with no audio
    assert stream.ended and h.core.stream is None
    await h.play(30)
    ended = [e for e in h.events if isinstance(e, SpeakingEnded)]
    assert [e.utterance_id for e in ended] == [stream.utterance_id, after.id]
    assert ended[0].duration_s == 1.0
    with pytest.raises(BadInput, match="has ended"):
        stream.push(b"\0\0")
    h.core.open_stream(16000)  # a new stream may open now
    await h.close()


async def test_one_live_stream_at_a_time_and_rates_are_checked():
    h = Harness()
    h.core.open_stream(16000)
    with pytest.raises(Busy):
        h.core.open_stream(16000)
    h.core.interrupt()
    for bad in (7999, 96001, "16000", None, True):
        with pytest.raises(BadInput):
            h.core.open_stream(bad)
    h.core.open_stream(48000)
    await h.close()


async def test_jobs_carry_deadlines_from_playout():
    h = Harness({"delay": lambda job: 1.0})
    h.core.speak(*speech(60))
    await h.play(1)
    first, *later = h.pool.jobs
    assert first.due_in_s == pytest.approx(0.0)
    assert all(b.due_in_s > a.due_in_s for a, b in zip(h.pool.jobs, later, strict=False))
    assert later[0].due_in_s == pytest.approx(first.frames / 25)
    await h.close()


async def test_speech_is_refused_after_close_and_when_too_much_is_queued():
    h = Harness(settings=replace(SETTINGS, max_queued_seconds=1.0))
    h.core.speak(*speech(50))
    with pytest.raises(Busy):
        h.core.speak(*speech(5))
    with pytest.raises(BadInput):
        h.core.speak(np.zeros(0, np.float32), np.zeros(0, np.float32))
    await h.close()
    with pytest.raises(NotFound):
        h.core.speak(*speech(5))


def test_job_audio_carries_whole_segments_or_a_margin():
    audio = np.arange(2000 * MODEL_SAMPLES_PER_UNIT, dtype=np.float32)
    clip, first = job_audio(audio, 800, 25, True, 750)  # second 30 s segment
    assert clip[0] == 0 and first == 800 and len(clip) == 1500 * MODEL_SAMPLES_PER_UNIT
    clip, first = job_audio(audio, 1600, 25, True, 750)
    assert clip[0] == 750 * MODEL_SAMPLES_PER_UNIT and first == 850
    clip, first = job_audio(audio, 100, 10, True, 0)  # local features: ±2 units
    assert clip[0] == 98 * MODEL_SAMPLES_PER_UNIT and first == 2 and len(clip) == 14 * MODEL_SAMPLES_PER_UNIT
    clip, first = job_audio(audio, 100, 10, False, 0)  # a stream: everything known so far
    assert len(clip) == len(audio) - 98 * MODEL_SAMPLES_PER_UNIT


async def test_an_interrupted_welcome_is_answered_but_not_announced():
    h = Harness(welcome_units=10)
    await h.play(3)
    events = h.core.interrupt()
    assert events == [Interrupted("welcome", 0.12)]
    assert h.events == []  # viewers hear of speech, not of the welcome's internals
    assert (await h.play(1))[0].kind == "idle"
    await h.close()
    h = Harness(welcome_units=2)
    await h.play(3)
    assert h.events == [WelcomeEnded()]
    await h.close()


def test_the_core_runs_with_the_transport_unimportable():
    code = (
        "import sys; sys.modules.update(aiortc=None, aiohttp=None); import pytest; "
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-o', 'asyncio_mode=auto', "
        "'-o', 'asyncio_default_fixture_loop_scope=function', "
        f"{__file__!r}, '-k', 'not unimportable']))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "aiortc" not in sys.modules.get("streamer.core.conversation").__dict__


async def test_pause_holds_an_answer_while_renders_go_on_and_resume_plays_all_of_it_in_sync():
    h = Harness({"delay": lambda job: 0.0 if job.first_unit == 0 else 0.5})
    h.core.speak(*speech(40))
    before = speech_units(await h.play(6))
    assert len(before) >= 1
    assert h.core.pause()
    rendered = len(h.pool.rendered)
    assert rendered < len(h.pool.jobs)  # later windows are still rendering
    held = await h.play(30)
    assert all(u.kind == "idle" and not u.audio.any() for u in held)
    assert len(h.pool.rendered) == len(h.pool.jobs) > rendered  # renders went on while paused
    assert h.core.describe()["state"] == "speaking"
    assert h.core.resume() and not h.core.resume()
    after = speech_units(await h.play(60))
    played = before + after
    assert [int(u.audio[0]) for u in played] == list(range(1, 41))  # nothing lost, nothing twice
    assert all(int(u.crop[0, 0, 0]) == u.position % 256 for u in played)
    assert h.kinds() == ["speaking_started", "speaking_ended"]
    await h.close()


async def test_an_interrupt_while_paused_ends_the_pause():
    h = Harness()
    h.core.speak(*speech(40))
    await h.play(6)
    assert h.core.pause()
    assert [e.type for e in h.core.interrupt()] == ["interrupted"]
    assert not h.core.resume()  # nothing left paused
    third = h.core.speak(*speech(5))
    assert [u.utterance_id for u in speech_units(await h.play(15))] == [third.id] * 5
    await h.close()


async def test_speaking_is_speech_queued_playing_or_paused_never_the_welcome_alone():
    h = Harness(welcome_units=3)
    assert not h.core.speaking  # the welcome clip alone
    h.core.speak(*speech(10))
    assert h.core.speaking and h.core.describe()["state"] == "welcome"  # queued behind the welcome
    await h.play(6)
    assert h.core.pause() and h.core.speaking
    h.core.interrupt()
    assert not h.core.speaking
    h.core.speak(*speech(5))
    await h.play(30)
    assert h.kinds()[-1] == "speaking_ended" and not h.core.speaking  # played to its end
    await h.close()
