"""What a Chromium viewer sees over N seconds of speech, from its getStats(); prints one JSON object.

    python bench/browser.py [--seconds 60] [--server URL] [--template astronaut] [--audio FILE]

Without --server it starts `python run.py serve` (default settings) on a free port. The speech
is --audio (default templates/welcome.wav) repeated to fill --seconds, sent in uploads of at
most 60 s; the figures cover first speaking_started to last speaking_ended.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import urllib.request
import wave
from pathlib import Path

from _checkout import ROOT
from tests.served import serve
from tests.support.servers import CHROMIUM, CHROMIUM_ARGS

UPLOAD_S = 60

CONNECT_JS = """
async (template) => {
  // A viewer built on embed.js's Session; stats are snapshotted at the speech events.
  const session = new window.DigitalHuman.Session({ server: location.origin, template, reconnect: false });
  const video = Object.assign(document.createElement("video"), { autoplay: true, playsInline: true });
  video.srcObject = session.stream;
  document.body.append(video);
  const raw = async () => {
    const out = { t: performance.now() };
    (await session.pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp") out[s.kind] = s;
      if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") out.pair = s;
    });
    return out;
  };
  const bench = { session, starts: [], ends: [], first: null, last: null };
  session.addEventListener("speaking-started", async (e) => {
    bench.starts.push(e.detail.utterance_id);
    if (!bench.first) bench.first = await raw();
  });
  session.addEventListener("speaking-ended", async (e) => {
    bench.ends.push(e.detail.utterance_id);
    bench.last = await raw();
  });
  window.bench = bench;
  const connected = new Promise((resolve) => session.addEventListener("connected", resolve, { once: true }));
  await session.connect();
  await connected;
  await video.play();
  return { session_id: session.sessionId, token: session.token };
}
"""


def speech_wavs(source: Path, seconds: float) -> list[bytes]:
    """`source` (a 16-bit WAV) repeated to `seconds`, as WAV files of at most UPLOAD_S each."""
    with wave.open(str(source)) as w:
        params = w.getparams()
        frames = w.readframes(w.getnframes())
    bytes_per_s = params.framerate * params.nchannels * params.sampwidth
    total = b""
    while len(total) < seconds * bytes_per_s:
        total += frames
    total = total[: int(seconds * bytes_per_s) // params.sampwidth * params.sampwidth]
    step = UPLOAD_S * bytes_per_s
    out = []
    for start in range(0, len(total), step):
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as w:
            w.setparams(params)
            w.writeframes(total[start : start + step])
        out.append(buffer.getvalue())
    return out


def api(url: str, token: str, method: str = "GET", body: bytes | None = None, content_type: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def figures(first: dict, last: dict) -> dict:
    """Deltas of Chromium's cumulative counters between two raw snapshots."""
    v0, v1, a0, a1 = first["video"], last["video"], first["audio"], last["audio"]
    seconds = (last["t"] - first["t"]) / 1000

    def delta(a: dict, b: dict, name: str) -> float:
        return b.get(name, 0) - a.get(name, 0)

    def jitter_ms(a: dict, b: dict) -> float | None:
        count = delta(a, b, "jitterBufferEmittedCount")
        return round(1000 * delta(a, b, "jitterBufferDelay") / count, 1) if count else None

    video_jb, audio_jb = jitter_ms(v0, v1), jitter_ms(a0, a1)
    samples = delta(a0, a1, "totalSamplesReceived")
    rtt = last.get("pair", {}).get("currentRoundTripTime")
    return {
        "seconds": round(seconds, 2),
        "fps": round(delta(v0, v1, "framesDecoded") / seconds, 2) if seconds else None,
        "frames_dropped": delta(v0, v1, "framesDropped"),
        "freeze_count": delta(v0, v1, "freezeCount"),
        "freeze_duration_s": round(delta(v0, v1, "totalFreezesDuration"), 3),
        "audio_concealed_pct": round(100 * delta(a0, a1, "concealedSamples") / samples, 3) if samples else None,
        "video_jitter_buffer_ms": video_jb,
        "audio_jitter_buffer_ms": audio_jb,
        "av_delay_ms": round(video_jb - audio_jb, 1) if video_jb is not None and audio_jb is not None else None,
        "rtt_ms": round(1000 * rtt, 2) if rtt is not None else None,
        "resolution": f"{v1.get('frameWidth')}x{v1.get('frameHeight')}",
    }


def measure(server: str, template: str, wavs: list[bytes], seconds: float) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{server}/")
            opened = page.evaluate(CONNECT_JS, template)
            base = f"{server}/api/sessions/{opened['session_id']}"
            ids = [api(f"{base}/speak", opened["token"], "POST", wav, "audio/wav")["utterance_id"] for wav in wavs]
            page.wait_for_function(
                f"() => window.bench.ends.includes({ids[-1]!r}) && window.bench.last",
                timeout=(seconds * 3 + 60) * 1000,
            )
            bench = page.evaluate("() => ({ first: window.bench.first, last: window.bench.last })")
            session = api(base, opened["token"])
            result = {
                **figures(bench["first"], bench["last"]),
                "stalls": session.get("stalls"),
                "link": session.get("link"),  # the adaptive ladder's view of this viewer
                "renderer": session.get("renderer"),
                "chromium": browser.version,
            }
            page.evaluate("() => window.bench.session.close()")
            return result
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of speech (default 60)")
    parser.add_argument("--server", help="a running server's URL (default: start one)")
    parser.add_argument("--template", default="astronaut")
    parser.add_argument("--audio", type=Path, default=ROOT / "templates" / "welcome.wav", help="a 16-bit WAV")
    args = parser.parse_args()
    wavs = speech_wavs(args.audio, args.seconds)
    with contextlib.nullcontext(args.server) if args.server else serve() as server:
        result = measure(server, args.template, wavs, args.seconds)
    result = {
        "benchmark": "browser",
        "template": args.template,
        "speech_s": args.seconds,
        **result,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
