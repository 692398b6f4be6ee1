"""Talking to the page out loud in a real Chromium: a WAV is its fake microphone; pressing
Talk sends it to the server, which hears the turn, shows what it understood, asks the LLM (a fake
OpenAI-compatible server) and speaks the answer: a whole spoken turn with no typing."""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamer.audio import decode_file, to_int16
from tests.browser.harness import Recorder, watch
from tests.fake_llm import FakeLlm, Script, fake_llm
from tests.served import serve
from tests.support.servers import CHROMIUM_ARGS

pytestmark = pytest.mark.browser

SESSION = "window.chat.session"
PC = "window.chat.session && window.chat.session.pc"
ANSWER = "I am well, thank you. It is a fine morning."


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
def llm() -> Iterator[FakeLlm]:
    with fake_llm(Script(ANSWER, token_s=0.03)) as fake:
        yield fake


@pytest.fixture(scope="module")
def talk_server(chromium_path: Path, llm: FakeLlm) -> Iterator[str]:
    with serve("--renderer", "lite", "--llm-url", llm.url, "--llm-model", "fake") as url:
        yield url


@pytest.fixture(scope="module")
def talking_browser(chromium_path: Path, spoken_question: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={spoken_question}%noloop"]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(chromium_path), args=args)
        yield chromium
        chromium.close()


def test_pressing_talk_and_asking_out_loud_gets_a_spoken_answer(talking_browser, talk_server: str, llm) -> None:
    context = talking_browser.new_context(viewport={"width": 900, "height": 900})
    context.grant_permissions(["microphone"])
    page = context.new_page()
    watch(page)
    try:
        page.goto(talk_server + "/")
        connect = page.get_by_role("button", name="Connect", exact=True)
        connect.wait_for()
        page.wait_for_function("() => !document.getElementById('connect').disabled")
        connect.click()
        page.wait_for_function("() => !document.getElementById('talk-toggle').disabled", timeout=30_000)
        rec = Recorder(page)
        rec.start(PC, SESSION)
        since = rec.event_count()
        page.get_by_role("button", name="Talk", exact=True).click()
        page.wait_for_function("() => document.getElementById('talk-status').dataset.talk !== 'off'")
        assert page.locator("#talk-toggle").get_attribute("aria-pressed") == "true"
        transcript = rec.wait_event("transcript", since, timeout_s=60)["detail"]
        assert "you" in transcript["text"], transcript  # pocketsphinx on espeak-ng through Chromium's audio processing
        turn = page.evaluate(f"window.__rec.events.slice({since}).map((e) => e.type)")
        assert turn.index("user-speech-started") < turn.index("user-speech-ended") < turn.index("transcript"), turn
        heard = since + turn.index("transcript")
        assert page.locator("#transcript").get_by_text("You (spoken):", exact=False).count() >= 1
        # The transcript is the LLM's question; its answer is spoken, lip-synced, and shown.
        started = rec.wait_event("speaking-started", heard, timeout_s=30)
        assert llm.requests[-1]["messages"][-1] == {"role": "user", "content": transcript["text"]}
        page.wait_for_function("() => document.getElementById('talk-status').dataset.talk === 'speaking'")
        ended = rec.wait_event("speaking-ended", heard, timeout_s=40)
        speech = rec.summary(started["t"], ended["t"])
        assert speech["maxLevel"] > 0.01, f"no speech audio heard: {speech}"
        page.wait_for_function(
            "() => { const a = document.querySelector('#transcript .avatar');"
            f" return a && a.textContent === {('Avatar: ' + ANSWER)!r}; }}",
            timeout=30_000,
        )
        page.wait_for_function("() => document.getElementById('talk-status').dataset.talk === 'listening'")
        page.get_by_role("button", name="Stop talking", exact=True).click()
        page.wait_for_function("() => document.getElementById('talk-status').dataset.talk === 'off'")
        assert page.problems == []
    finally:
        context.close()
