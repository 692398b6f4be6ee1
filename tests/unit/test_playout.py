"""Playout, tick by tick: welcome → idle → speech → stall → resume → interrupt."""

import numpy as np

from streamer.core.events import to_json
from streamer.core.playout import Playout
from streamer.core.segmenter import Window
from streamer.core.utterance import SILENCE, Utterance


def crops(first: int, units: int) -> np.ndarray:
    """Crops whose first pixel encodes the unit number, so a test can read what played."""
    out = np.zeros((units, 256, 256, 3), dtype=np.uint8)
    out[:, 0, 0, 0] = np.arange(first, first + units)
    return out


def speech(uid: str, units: int, epoch: int = 0) -> Utterance:
    """Audio whose samples encode the unit number: unit k is all (k + 1)."""
    u = Utterance(uid, epoch)
    u.add_audio(np.repeat(np.arange(1, units + 1, dtype=np.int16), 1920))
    return u


def make() -> tuple[Playout, list[dict]]:
    events: list[dict] = []
    return Playout(lambda e: events.append(to_json(e)), lead_units=2), events


def test_welcome_then_idle_with_events():
    playout, events = make()
    welcome = speech("welcome", 3)
    welcome.kind = "welcome"
    welcome.add_window(Window(0, 3, crops(0, 3)))
    welcome.end()
    welcome.base_position = 0
    playout.enqueue(welcome)
    assert playout.state == "welcome"
    units = [playout.tick() for _ in range(5)]
    assert [u.kind for u in units] == ["welcome"] * 3 + ["idle"] * 2
    assert [u.position for u in units] == [0, 1, 2, 3, 4]
    assert [int(u.audio[0]) for u in units[:3]] == [1, 2, 3]
    assert all(u.crop is None and not u.audio.any() for u in units[3:])
    assert [e["type"] for e in events] == ["speaking_started", "speaking_ended"]
    assert playout.state == "idle"


def test_speech_waits_for_first_window_then_stalls_and_resumes_in_sync():
    playout, events = make()
    playout.tick()  # idle at position 0
    u = speech("u1", 6)
    playout.enqueue(u)
    assert playout.assign_base(u)
    assert u.base_position == 0 + 1 + 2
    first, second = Window(0, 2), Window(2, 4)
    u.add_window(first)
    u.add_window(second)
    u.end()

    # Not rendered yet and not started: idle, not a stall.
    assert playout.tick().kind == "idle"
    assert playout.counters.stalls == 0
    first.crops = crops(0, 2)
    a, b = playout.tick(), playout.tick()
    assert (a.kind, b.kind) == ("speech", "speech")
    assert [int(x.crop[0, 0, 0]) for x in (a, b)] == [0, 1]
    assert [int(x.audio[0]) for x in (a, b)] == [1, 2]  # the audio rendered with that crop
    assert (a.position, b.position) == (3, 4)

    # Started, next window not rendered: a stall plays silence and holds the face.
    stall = playout.tick()
    assert stall.kind == "stall" and stall.crop is None
    assert stall.audio is SILENCE or not stall.audio.any()
    assert stall.position == 5
    assert playout.counters.stalls == 1

    second.crops = crops(2, 4)
    rest = [playout.tick() for _ in range(4)]
    assert [int(x.crop[0, 0, 0]) for x in rest] == [2, 3, 4, 5]
    assert [int(x.audio[0]) for x in rest] == [3, 4, 5, 6]
    assert [x.position for x in rest] == [5, 6, 7, 8]
    assert playout.tick().kind == "idle"
    assert [e["type"] for e in events] == ["speaking_started", "speaking_ended"]
    assert events[1]["duration_s"] == 0.24


def test_audio_and_video_of_a_unit_are_never_split():
    """Every speech unit pairs crop k with audio k, whatever order the windows arrive in."""
    rng = np.random.default_rng(1)
    playout, _ = make()
    u = speech("u", 40)
    playout.enqueue(u)
    playout.assign_base(u)
    windows = [Window(i, 5) for i in range(0, 40, 5)]
    for w in windows:
        u.add_window(w)
    u.end()
    played = []
    pending = list(windows)
    while len(played) < 40:
        if pending and rng.random() < 0.4:
            w = pending.pop(int(rng.integers(len(pending))))
            w.crops = crops(w.first_unit, w.units)
        unit = playout.tick()
        if unit.kind == "speech":
            played.append(unit)
    assert [int(x.crop[0, 0, 0]) for x in played] == list(range(40))
    assert [int(x.audio[0]) - 1 for x in played] == list(range(40))


def test_streaming_source_slower_than_real_time_counts_starved():
    playout, _ = make()
    u = speech("s", 2)
    playout.enqueue(u)
    playout.assign_base(u)
    u.add_window(Window(0, 2, crops(0, 2)))
    playout.tick()
    playout.tick()
    assert playout.tick().kind == "stall"
    assert playout.counters.starved == 1 and playout.counters.stalls == 0
    u.add_audio(np.full(1920, 9, dtype=np.int16))
    u.add_window(Window(2, 1, crops(2, 1)))
    u.end()
    last = playout.tick()
    assert last.kind == "speech" and int(last.audio[0]) == 9


def test_interrupt_returns_to_idle_on_the_next_tick():
    playout, events = make()
    u1, u2 = speech("u1", 50), speech("u2", 10)
    for u in (u1, u2):
        playout.enqueue(u)
    playout.assign_base(u1)
    u1.add_window(Window(0, 50, crops(0, 50)))
    u1.end()
    assert playout.assign_base(u2)
    assert u2.base_position == u1.base_position + 50
    for _ in range(12):
        playout.tick()
    dropped = playout.interrupt()
    assert [(e.utterance_id, e.position_s) for e in dropped] == [("u1", 0.48), ("u2", 0.0)]
    assert [e["type"] for e in events] == ["speaking_started"]  # the caller emits the interrupts
    nxt = playout.tick()
    assert nxt.kind == "idle" and not nxt.audio.any()
    assert nxt.position == u1.base_position + 11 + 1
    assert playout.queued_seconds == 0


def test_later_utterance_waits_for_the_earlier_to_end_before_taking_positions():
    playout, _ = make()
    u1, u2 = speech("u1", 10), speech("u2", 10)
    playout.enqueue(u1)
    playout.enqueue(u2)
    assert playout.assign_base(u1)
    assert not playout.assign_base(u2)  # u1's length is not known yet
    u1.add_window(Window(0, 10, crops(0, 10)))
    u1.end()
    assert playout.assign_base(u2)


def test_a_stream_that_ends_empty_still_ends_for_its_listeners():
    playout, events = make()
    empty = Utterance("e", 0)
    playout.enqueue(empty)
    playout.assign_base(empty)
    empty.end()
    assert playout.tick().kind == "idle"
    assert events == [{"type": "speaking_ended", "utterance_id": "e", "tick": 0, "duration_s": 0.0}]


def test_a_unit_whose_48k_audio_has_not_all_arrived_waits():
    playout, _ = make()
    u = Utterance("s", 0)
    playout.enqueue(u)
    playout.assign_base(u)
    u.add_audio(np.ones(1920 + 100, np.int16))  # unit 1 is short of its last samples
    u.add_window(Window(0, 2, crops(0, 2)))
    assert playout.tick().kind == "speech"
    assert playout.tick().kind == "stall" and playout.counters.starved == 1
    u.add_audio(np.ones(1820, np.int16))
    assert playout.tick().kind == "speech"


def test_pause_holds_the_place_plays_silence_and_resume_continues_in_sync():
    playout, events = make()
    u = speech("u", 10)
    playout.enqueue(u)
    playout.assign_base(u)
    u.add_window(Window(0, 10, crops(0, 10)))
    u.end()
    first = [playout.tick() for _ in range(3)]
    assert [int(x.audio[0]) for x in first] == [1, 2, 3]
    assert playout.pause() and not playout.pause()  # a second pause changes nothing
    held = [playout.tick() for _ in range(4)]
    assert all(x.kind == "idle" and x.crop is None and not x.audio.any() for x in held)
    assert {x.position for x in held} == {first[-1].position}  # the face holds where it stopped
    assert u.played == 3 and playout.counters.paused_units == 4
    assert playout.state == "speaking"
    assert playout.resume() and not playout.resume()
    rest = [playout.tick() for _ in range(7)]
    assert [int(x.audio[0]) for x in rest] == [4, 5, 6, 7, 8, 9, 10]
    assert [int(x.crop[0, 0, 0]) for x in rest] == [3, 4, 5, 6, 7, 8, 9]  # crop k with audio k
    assert [x.position for x in rest] == list(range(first[-1].position + 1, first[-1].position + 8))
    assert [e["type"] for e in events] == ["speaking_started", "speaking_ended"]
    assert events[1]["duration_s"] == 0.4


def test_a_pause_before_speech_starts_keeps_it_from_starting_and_an_interrupt_ends_the_pause():
    playout, events = make()
    assert not playout.pause()  # nothing queued: nothing to hold
    u = speech("u", 5)
    playout.enqueue(u)
    playout.assign_base(u)
    u.add_window(Window(0, 5, crops(0, 5)))
    assert playout.pause()
    assert [playout.tick().kind for _ in range(3)] == ["idle"] * 3
    assert u.played == 0 and events == []
    assert [(e.utterance_id, e.position_s) for e in playout.interrupt()] == [("u", 0.0)]
    assert not playout.paused
    v = speech("v", 2)
    playout.enqueue(v)
    playout.assign_base(v)
    v.add_window(Window(0, 2, crops(0, 2)))
    v.end()
    assert [playout.tick().kind for _ in range(2)] == ["speech", "speech"]
