"""Talking to the page out loud in a real Chromium: a WAV is its fake microphone; pressing
Talk sends it to the server, which hears the turn and shows what it understood."""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamer.audio import decode_file, to_int16
from tests.browser.harness import watch
from tests.support.servers import CHROMIUM_ARGS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def spoken_question(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Silence, "Good morning, how are you?", silence: a 48 kHz WAV for Chromium's fake microphone."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    folder = tmp_path_factory.mktemp("talk")
    raw = folder / "raw.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), "Good morning, how are you?"], check=True)
    voice = to_int16(decode_file(raw, 48000))
    samples = np.concatenate([np.zeros(48000 * 2, np.int16), voice, np.zeros(48000 * 4, np.int16)])
    path = folder / "question.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(samples.tobytes())
    return path


@pytest.fixture(scope="module")
def talking_browser(chromium_path: Path, spoken_question: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={spoken_question}%noloop"]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(chromium_path), args=args)
        yield chromium
        chromium.close()


def test_pressing_talk_and_asking_out_loud_gives_a_transcript(talking_browser, server: str) -> None:
    context = talking_browser.new_context(viewport={"width": 900, "height": 900})
    context.grant_permissions(["microphone"])
    page = context.new_page()
    watch(page)
    try:
        page.goto(server + "/")
        connect = page.get_by_role("button", name="Connect", exact=True)
        connect.wait_for()
        page.wait_for_function("() => !document.getElementById('connect').disabled")
        connect.click()
        page.wait_for_function("() => !document.getElementById('talk-toggle').disabled", timeout=30_000)
        page.evaluate(
            """() => { window.__heard = [];
                for (const name of ['user-speech-started', 'user-speech-ended', 'transcript'])
                  window.chat.session.addEventListener(name, (e) => window.__heard.push({name, ...e.detail})); }"""
        )
        page.get_by_role("button", name="Talk", exact=True).click()
        page.wait_for_function("() => document.getElementById('talk-status').dataset.talk !== 'off'")
        assert page.locator("#talk-toggle").get_attribute("aria-pressed") == "true"
        page.wait_for_function("() => window.__heard.some((e) => e.name === 'transcript')", timeout=60_000)
        heard = page.evaluate("() => window.__heard")
        names = [e["name"] for e in heard]
        assert names[:3] == ["user-speech-started", "user-speech-ended", "transcript"], heard
        transcript = heard[2]["text"]
        assert "you" in transcript, heard  # pocketsphinx on espeak-ng through Chromium's audio processing
        assert page.locator("#transcript").get_by_text("You (spoken):", exact=False).count() >= 1
        assert page.locator("#talk-status").text_content() in ("thinking", "listening", "heard you")
        page.get_by_role("button", name="Stop talking", exact=True).click()
        page.wait_for_function("() => document.getElementById('talk-status').dataset.talk === 'off'")
        assert page.problems == []
    finally:
        context.close()
