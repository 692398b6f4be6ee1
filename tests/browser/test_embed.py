"""embed.js on a bare page of another origin: the <digital-human> element end to end."""

from __future__ import annotations

import pytest

from streamer.testing import serve
from tests.browser.harness import TEMPLATE, Recorder, video_variation_js

pytestmark = pytest.mark.browser

ELEMENT = "document.querySelector('digital-human')"
LISTEN_JS = """async () => {
  // An analyser on the element's received audio (what the viewer hears).
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  ctx.createMediaStreamSource(ELEMENT.session.stream).connect(analyser);
  window.__analyser = analyser;
}"""
PEAK_JS = """() => {
  // The loudest frequency of the last 170 ms of received audio, and how far it stands out.
  const a = window.__analyser;
  const db = new Float32Array(a.frequencyBinCount);
  a.getFloatFrequencyData(db);
  let best = 1;
  for (let i = 1; i < db.length; i++) if (db[i] > db[best]) best = i;
  const sorted = Array.from(db).filter(Number.isFinite).sort((x, y) => x - y);
  return { hz: best * a.context.sampleRate / a.fftSize, peakDb: db[best], medianDb: sorted[sorted.length >> 1] };
}"""


def bare_page(server: str) -> str:
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>embed</title><link rel="icon" href="data:,">
<script src="{server}/embed.js"></script></head>
<body><digital-human server="{server}" template="{TEMPLATE}"></digital-human></body></html>"""


@pytest.fixture
def embed_page(page, server: str, site):
    port, pages = site
    pages["/embed.html"] = bare_page(server)
    return page, port


def test_the_element_connects_plays_speaks_and_interrupts(embed_page) -> None:
    page, port = embed_page
    page.goto(f"http://127.0.0.1:{port}/embed.html")
    page.wait_for_function("() => customElements.get('digital-human') !== undefined")
    methods = page.evaluate(
        f"() => ['connect','speak','say','interrupt','close'].filter((m) => typeof {ELEMENT}[m] === 'function')"
    )
    assert methods == ["connect", "speak", "say", "interrupt", "close"]
    rec = Recorder(page)
    rec.start(f"{ELEMENT}.session && {ELEMENT}.session.pc", ELEMENT)
    page.evaluate(f"() => {{ {ELEMENT}.connect(); }}")
    rec.wait_event("connected")
    rec.wait_frames(10)
    t0 = rec.now()
    rec.wait_frames(50)
    figures = rec.summary(t0, rec.now())
    assert 21 <= figures["fps"] <= 30 and figures["freezes"] == 0, figures  # 25 fps; bursts after a stall under load
    look = page.evaluate(video_variation_js(f"{ELEMENT}.shadowRoot.querySelector('video')"))
    assert look["std"] > 15, f"the video looks blank: {look}"

    since = rec.event_count()
    result = page.evaluate(f"() => {ELEMENT}.say('Good morning, how can I help?')")
    assert result["utterance_id"] and result["duration_s"] > 0.5
    started = rec.wait_event("speaking-started", since)
    ended = rec.wait_event("speaking-ended", since)
    assert started["detail"]["utterance_id"] == ended["detail"]["utterance_id"] == result["utterance_id"]
    assert rec.summary(started["t"], ended["t"])["maxLevel"] > 0.01

    # speak() with raw PCM (an ArrayBuffer): 2 s of a 220 Hz tone at 16 kHz, little-endian as
    # audio/pcm, then big-endian as audio/L16; each must be heard as that tone, not as noise.
    page.evaluate(LISTEN_JS.replace("ELEMENT", ELEMENT))
    for content_type, little_endian in (("audio/pcm;rate=16000", True), ("audio/L16;rate=16000", False)):
        since = rec.event_count()
        spoken = page.evaluate(
            f"""async () => {{
              const view = new DataView(new ArrayBuffer(64000));
              for (let i = 0; i < 32000; i++) {{
                view.setInt16(
                  2 * i, Math.round(8000 * Math.sin(2 * Math.PI * 220 * i / 16000)), {str(little_endian).lower()}
                );
              }}
              return {ELEMENT}.speak(view.buffer, '{content_type}');
            }}"""
        )
        assert abs(spoken["duration_s"] - 2.0) < 0.1
        rec.wait_event("speaking-started", since)
        rec.wait_frames(15)  # 0.6 s of the tone into the analyser
        heard = page.evaluate(PEAK_JS)
        assert abs(heard["hz"] - 220) < 12 and heard["peakDb"] - heard["medianDb"] > 30, (content_type, heard)
        page.evaluate(f"() => {ELEMENT}.interrupt()")
        interrupted = rec.wait_event("interrupted", since)
        assert interrupted["detail"]["utterance_id"] == spoken["utterance_id"]

    page.evaluate(f"() => {ELEMENT}.close()")
    assert page.evaluate(f"() => {ELEMENT}.session") is None
    assert page.problems == []


def test_calls_before_connect_raise_an_error_event(embed_page) -> None:
    page, port = embed_page
    page.goto(f"http://127.0.0.1:{port}/embed.html")
    detail = page.evaluate(
        f"""() => new Promise((resolve) => {{
          {ELEMENT}.addEventListener('error', (e) => resolve(e.detail), {{ once: true }});
          {ELEMENT}.say('hello').catch(() => {{}});
        }})"""
    )
    assert "connect" in detail["message"]


def test_an_origin_not_allowed_is_refused(embed_page) -> None:
    page, port = embed_page
    # Same page, but from http://localhost:PORT: an origin the server was not told about.
    page.goto(f"http://localhost:{port}/embed.html")
    detail = page.evaluate(
        f"""() => new Promise((resolve) => {{
          {ELEMENT}.addEventListener('error', (e) => resolve(e.detail), {{ once: true }});
          {ELEMENT}.connect().catch(() => {{}});
        }})"""
    )
    assert detail["status"] == 0 and "--cors" in detail["message"], detail
    assert page.evaluate(f"() => {ELEMENT}.session") is None


def test_the_key_attribute_opens_sessions_on_a_server_with_a_key(page) -> None:
    with serve("--renderer", "lite", "--key", "test-key") as url:
        # A page of the server's own origin, answered by the browser itself.
        html = bare_page(url).replace("<digital-human ", '<digital-human key="test-key" ', 1)
        page.route(f"{url}/bare.html", lambda route: route.fulfill(body=html, content_type="text/html"))
        page.goto(f"{url}/bare.html")
        page.wait_for_function("() => customElements.get('digital-human') !== undefined")
        opened = page.evaluate(f"async () => (await {ELEMENT}.connect()).sessionId")
        assert opened
        page.evaluate(f"() => {ELEMENT}.close()")

        page.evaluate(f"() => {ELEMENT}.removeAttribute('key')")
        detail = page.evaluate(
            f"""() => new Promise((resolve) => {{
              {ELEMENT}.addEventListener('error', (e) => resolve(e.detail), {{ once: true }});
              {ELEMENT}.connect().catch(() => {{}});
            }})"""
        )
        assert detail["status"] == 401 and "key" in detail["message"], detail


def test_the_audio_socket_carries_its_token_as_a_subprotocol_not_in_the_url(embed_page) -> None:
    page, port = embed_page
    page.goto(f"http://127.0.0.1:{port}/embed.html")
    page.wait_for_function("() => customElements.get('digital-human') !== undefined")
    rec = Recorder(page)
    rec.start(f"{ELEMENT}.session && {ELEMENT}.session.pc", ELEMENT)
    page.evaluate(f"() => {{ {ELEMENT}.connect(); }}")
    rec.wait_event("connected")
    opened = page.evaluate(
        f"""() => new Promise((resolve, reject) => {{
          const ws = {ELEMENT}.session.audioSocket();
          ws.onopen = () => ws.send(JSON.stringify({{type: "start", sample_rate: 16000}}));
          ws.onmessage = (e) => {{
            resolve({{protocol: ws.protocol, url: ws.url, reply: JSON.parse(e.data)}});
            ws.close();
          }};
          ws.onerror = () => reject(new Error("the socket failed"));
        }})"""
    )
    assert opened["protocol"] == "streamer-audio" and opened["reply"]["type"] == "started"
    assert "token" not in opened["url"]
