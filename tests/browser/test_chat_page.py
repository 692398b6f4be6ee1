"""The chat page in Chromium with a reply engine: a typed question is answered aloud."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.harness import Recorder, watch
from tests.fake_llm import FakeLlm, Script, fake_llm
from tests.served import serve

pytestmark = pytest.mark.browser

SESSION = "window.chat.session"
PC = "window.chat.session && window.chat.session.pc"
ANSWER = "The sky looks blue because air scatters blue light the most. Sunsets are red for the same reason."


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLlm]:
    with fake_llm(Script(ANSWER, token_s=0.03)) as fake:
        yield fake


@pytest.fixture(scope="module")
def chat_server(chromium_path, llm: FakeLlm) -> Iterator[str]:
    with serve("--renderer", "lite", "--llm-url", llm.url, "--llm-model", "fake") as url:
        yield url


def test_a_typed_question_is_answered_aloud(browser, chat_server: str, llm: FakeLlm) -> None:
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    watch(page)
    try:
        page.goto(chat_server + "/")
        connect = page.get_by_role("button", name="Connect", exact=True)
        page.wait_for_function("() => !document.getElementById('connect').disabled")
        connect.click()
        page.wait_for_function(f"() => {SESSION} && {SESSION}.pc")
        rec = Recorder(page)
        rec.start(PC, SESSION)
        rec.wait_event("connected")
        rec.wait_event("welcome-ended", timeout_s=40)
        box = page.get_by_label("Ask", exact=False)  # the page knows the server can answer
        since = rec.event_count()
        box.fill("Why is the sky blue?")
        box.press("Enter")
        page.wait_for_function("() => document.querySelector('#transcript .avatar')")
        started = rec.wait_event("speaking-started", since)
        page.wait_for_function(
            "() => { const a = document.querySelector('#transcript .avatar');"
            f" return a && a.textContent === {('Avatar: ' + ANSWER)!r}; }}",
            timeout=30_000,
        )
        ended = rec.wait_event("speaking-ended", since, timeout_s=40)
        speech = rec.summary(started["t"], ended["t"])
        assert speech["maxLevel"] > 0.01, f"no speech audio heard: {speech}"
        items = page.locator("#transcript li").all_text_contents()
        you = items.index("You: Why is the sky blue?")
        assert any(text.startswith("Avatar: The sky") for text in items[you + 1 :])
        assert llm.requests[-1]["messages"][-1] == {"role": "user", "content": "Why is the sky blue?"}
        assert page.problems == []
    finally:
        context.close()
