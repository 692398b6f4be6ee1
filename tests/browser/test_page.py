"""The chat page at `/` in a real Chromium: connect, watch, talk, interrupt, reconnect."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamer.config import ROOT
from tests.browser.harness import TEMPLATE, Recorder, video_variation_js, watch
from tests.served import serve

pytestmark = pytest.mark.browser

SESSION = "window.chat.session"
PC = "window.chat.session && window.chat.session.pc"


def test_page_loads_without_console_errors(page, server: str) -> None:
    page.goto(server + "/")
    page.get_by_role("radio", name=TEMPLATE, exact=False).first.wait_for()
    page.wait_for_function("() => !document.getElementById('renderer').textContent.includes('…')")
    assert page.locator("#renderer").text_content() in ("renderer: lite", "renderer: musetalk")
    preview_ok = page.evaluate(
        "() => [...document.querySelectorAll('.template img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    assert preview_ok, "a template preview did not load"
    # Every control has an accessible name (labels), so the page works with a screen reader.
    for label in ("Line to say", "Audio file"):
        assert page.get_by_label(label, exact=False).count() == 1
    assert page.problems == []


@pytest.fixture(scope="module")
def chat(browser, server: str) -> Iterator[tuple[object, Recorder]]:
    """The page, connected once for the tests below (they run in order on one session)."""
    context = browser.new_context(viewport={"width": 420, "height": 900})  # a phone's width
    page = context.new_page()
    watch(page)
    page.goto(server + "/")
    connect = page.get_by_role("button", name="Connect", exact=True)
    connect.wait_for()
    page.wait_for_function("() => !document.getElementById('connect').disabled")
    connect.click()
    page.wait_for_function(f"() => {SESSION} && {SESSION}.pc")
    recorder = Recorder(page)
    recorder.start(PC, SESSION)
    recorder.wait_event("connected")
    yield page, recorder
    context.close()


def test_connect_shows_the_welcome_clip_and_plays_25_fps(chat) -> None:
    page, rec = chat
    page.wait_for_function("() => document.getElementById('video').readyState >= 2")
    assert "connected" in page.locator("#connection").text_content()
    rec.wait_frames(10)  # settle: the first frames wait for a keyframe
    t0 = rec.now()
    rec.wait_frames(75)  # 3 s at 25 fps
    figures = rec.summary(t0, rec.now())
    assert 21 <= figures["fps"] <= 28, figures
    assert figures["freezes"] == 0, figures
    assert figures["samples"] > 0.8 * 48_000 * figures["seconds"], f"audio did not flow: {figures}"
    assert page.evaluate("() => document.getElementById('video').currentTime") > 0
    stats_fps = page.locator("#stat-fps").text_content()
    assert stats_fps != "–" and float(stats_fps) > 15, stats_fps
    assert page.problems == []


def test_typing_a_line_speaks_it_with_audio(chat) -> None:
    page, rec = chat
    since = rec.event_count()
    box = page.get_by_label("Line to say", exact=False)
    box.fill("Hello there, this is a test of the speaking avatar.")
    box.press("Enter")
    started = rec.wait_event("speaking-started", since)
    assert page.locator("#speaking").get_attribute("data-speaking") == "true"
    ended = rec.wait_event("speaking-ended", since)
    assert started["detail"]["utterance_id"] == ended["detail"]["utterance_id"]
    speech = rec.summary(started["t"], ended["t"])
    assert speech["seconds"] > 0.5, speech
    assert speech["maxLevel"] > 0.01, f"no speech audio heard: {speech}"
    assert speech["concealedPct"] < 10, speech
    page.wait_for_function("() => document.getElementById('speaking').dataset.speaking === 'false'")
    transcript = page.locator("#transcript").text_content()
    assert "You: Hello there" in transcript and "finished" in transcript


def test_escape_interrupts_speech(chat) -> None:
    page, rec = chat
    since = rec.event_count()
    box = page.get_by_label("Line to say", exact=False)
    box.fill("This is a long sentence that goes on and on so that there is time to interrupt it " * 3)
    box.press("Enter")
    started = rec.wait_event("speaking-started", since)
    page.keyboard.press("Escape")
    interrupted = rec.wait_event("interrupted", since)
    assert interrupted["detail"]["utterance_id"] == started["detail"]["utterance_id"]
    assert interrupted["detail"]["position_s"] < 15
    later = rec.event_count()
    page.wait_for_function("() => document.getElementById('speaking').dataset.speaking === 'false'")
    state = page.evaluate(f"() => {SESSION}.state()")
    assert state["state"] == "idle" and state["queued_seconds"] == 0, state
    assert not any(e["type"] == "speaking-ended" for e in page.evaluate("window.__rec.events")[later:])


def test_uploaded_file_is_spoken(chat, tmp_path: Path) -> None:
    page, rec = chat
    since = rec.event_count()
    page.get_by_label("Audio file", exact=False).set_input_files(str(_welcome_wav()))
    page.get_by_role("button", name="Speak file").click()
    rec.wait_event("speaking-started", since)
    rec.wait_event("speaking-ended", since, timeout_s=40)
    assert "queued 6.1 s of audio" in page.locator("#transcript").text_content()


def test_a_microphone_recording_is_spoken(chat) -> None:
    page, rec = chat  # Chromium's fake microphone (a beep), granted by the fake UI flag
    since = rec.event_count()
    record = page.get_by_role("button", name="Record from microphone")
    record.click()
    page.wait_for_function("() => window.chat.recorder && window.chat.recorder.state === 'recording'")
    rec.wait_frames(40)  # the video as a clock: about 1.6 s of recording
    page.get_by_role("button", name="Stop and send").click()
    started = rec.wait_event("speaking-started", since)
    rec.wait_event("speaking-ended", since)
    assert "You sent a recording" in page.locator("#transcript").text_content()
    assert started["detail"]["utterance_id"]
    assert record.get_attribute("aria-pressed") == "false"


def test_screenshot_shows_the_face(chat, tmp_path: Path) -> None:
    page, _ = chat
    look = page.evaluate(video_variation_js("document.getElementById('video')"))
    assert look["width"] >= 256 and look["std"] > 15, f"the video looks blank: {look}"
    shot = tmp_path / "page.png"
    page.locator("#video").screenshot(path=str(shot))
    image = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
    assert image is not None and float(np.std(image)) > 15, "the screenshot is uniform"


def test_a_dropped_connection_reconnects_to_a_new_session(chat, server: str) -> None:
    page, rec = chat
    old, token = page.evaluate(f"() => [{SESSION}.sessionId, {SESSION}.token]")
    since = rec.event_count()
    # The server ends the session: to the page the peer stops answering, as in a network drop.
    request = urllib.request.Request(
        f"{server}/api/sessions/{old}", method="DELETE", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    rec.wait_event("connected", since, timeout_s=40)
    new = page.evaluate(f"() => {SESSION}.sessionId")
    assert new and new != old
    rec.wait_frames(25)
    presented = "() => new Promise((ok) => document.getElementById('video').requestVideoFrameCallback(() => ok(true)))"
    assert page.evaluate(presented), "the video element shows no frame of the new session"
    assert "reconnecting" in page.locator("#transcript").text_content()
    assert "connected" in page.locator("#connection").text_content()


def test_say_without_a_tts_engine_shows_the_error(page, chromium_path) -> None:
    with serve("--renderer", "lite", env={"STREAMER_TTS": "none"}) as url:
        page.goto(url + "/")
        page.wait_for_function("() => !document.getElementById('connect').disabled")
        page.get_by_role("button", name="Connect", exact=True).click()
        box = page.get_by_label("Line to say", exact=False)
        page.wait_for_function("() => !document.getElementById('say-text').disabled")
        box.fill("Can you hear me?")
        box.press("Enter")
        alert = page.get_by_role("alert")
        alert.wait_for()
        assert "503" in alert.text_content() and "TTS" in alert.text_content()
        page.get_by_role("button", name="Disconnect").click()


def test_a_keyed_server_page_opens_with_the_grant_run_py_prints(page, chromium_path) -> None:
    key = "chat-page-server-key-0123456789"
    with serve("--renderer", "lite", "--key", key) as url:
        page.goto(url + "/")  # no grant: the page says how to get one
        page.wait_for_function("() => !document.getElementById('connect').disabled")
        page.get_by_role("button", name="Connect", exact=True).click()
        page.get_by_role("alert").wait_for()
        assert "401" in page.get_by_role("alert").text_content()
        assert "run.py grant" in page.get_by_role("alert").text_content()

        printed = subprocess.run(
            [sys.executable, "run.py", "grant", "--server", url, "--key", key, "--template", TEMPLATE],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert printed.returncode == 0, printed.stderr
        address = printed.stdout.strip()
        assert address.startswith(url + "/#grant=") and key not in address
        page.goto("about:blank")
        page.goto(address)
        assert page.evaluate("() => location.hash") == ""  # dropped from the address bar at once
        page.wait_for_function("() => !document.getElementById('connect').disabled")
        page.get_by_role("button", name="Connect", exact=True).click()
        page.wait_for_function("() => document.getElementById('connection').textContent.includes('session')")
        assert key not in page.content()
        page.get_by_role("button", name="Disconnect").click()


def _welcome_wav() -> Path:
    return Path(__file__).resolve().parents[2] / "templates" / "welcome.wav"
