"""Per-client and per-session limits as rules, and the conversation core's side of them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streamer.config import Settings
from streamer.core.clock import FakeClock
from streamer.core.conversation import Conversation
from streamer.errors import Busy
from streamer.metrics import Metrics
from streamer.server.limits import check_client, check_uploads, limit_reached
from tests.fakes import FakePool, tiny_template

SETTINGS = Settings(max_sessions_per_client=2, idle_timeout_s=60, max_uploads_per_session=2, max_queued_seconds=1.0)


def test_sessions_per_client_address():
    check_client(SETTINGS, "203.0.113.5", ["203.0.113.5"])
    with pytest.raises(Busy, match=r"203\.0\.113\.5 holds its limit of 2"):
        check_client(SETTINGS, "203.0.113.5", ["203.0.113.5", "198.51.100.1", "203.0.113.5"])
    check_client(SETTINGS, "198.51.100.1", ["203.0.113.5", "203.0.113.5"])
    check_client(SETTINGS, "127.0.0.1", ["127.0.0.1"] * 10)  # loopback: tests, benches, a local backend
    check_client(SETTINGS, None, [])


def test_length_and_idle_limits():
    assert limit_reached(SETTINGS, age_s=10, longest_s=900, idle_s=5) is None
    assert limit_reached(SETTINGS, age_s=900, longest_s=900, idle_s=5) == "limit"
    assert limit_reached(SETTINGS, age_s=100, longest_s=900, idle_s=60) == "idle"
    never = Settings(idle_timeout_s=0)
    assert limit_reached(never, age_s=100, longest_s=900, idle_s=1e9) is None


def test_concurrent_uploads():
    check_uploads(SETTINGS, 1)
    with pytest.raises(Busy, match="2 uploads"):
        check_uploads(SETTINGS, 2)


def _core(settings: Settings, pool: FakePool | None = None, on_failure=None) -> tuple[Conversation, FakeClock]:
    clock = FakeClock()
    core = Conversation(
        "s1",
        tiny_template(),
        pool or FakePool(clock),
        settings,
        clock,
        Metrics(),
        lambda e: None,
        on_failure=on_failure,
    )
    return core, clock


async def test_a_live_stream_cannot_buffer_more_than_max_queued_seconds():
    core, _ = _core(SETTINGS)
    core.start()
    stream = core.open_stream(16000)
    stream.push(np.zeros(9600, "<i2").tobytes())  # 0.6 s
    with pytest.raises(Busy, match="buffered"):
        stream.push(np.zeros(9600, "<i2").tobytes())  # 1.2 s unplayed > 1.0 s
    await core.close()


async def test_activity_is_speech_arriving_or_playing_not_idle_ticks():
    core, clock = _core(SETTINGS)
    core.start()
    start = core.active_at
    await clock.advance(30)
    core.tick()  # idle
    assert core.active_at == start
    core.speak(np.zeros(3200, np.float32), np.zeros(9600, np.float32))
    assert core.active_at == clock.now()
    await core.close()


async def test_a_dispatcher_that_dies_is_reported():
    failures: list[tuple[str, BaseException]] = []

    class BrokenPool(FakePool):
        def stats(self):
            raise RuntimeError("no stats")

    clock = FakeClock()
    core, _ = _core(SETTINGS, BrokenPool(clock), on_failure=lambda name, exc: failures.append((name, exc)))
    core.start()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [name.rsplit(":", 1)[-1] for name, _ in failures] == ["dispatcher"]
    assert isinstance(failures[0][1], RuntimeError)
    await core.close()
