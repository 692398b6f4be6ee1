"""Fuzz every HTTP route and the audio WebSocket of a live server; prints one JSON object.

    python bench/fuzz.py --minutes 10 [--seed 1]

Starts `run.py serve` (lite renderer) as its own process with one session kept open, then
sends hypothesis-generated requests: every route, methods, headers, content types, query
strings, JSON bodies, mutated real SDP offers, corrupt audio of every accepted type, and
WebSocket message sequences. The property, always: a documented 4xx with a JSON sentence,
never a 5xx, never a hang, and the server and the open session keep streaming. Reports inputs
tried, 5xx, hangs and crashes (server exits). The uploads include every container, codec and
channel layout PyAV can write (bench/audio_layouts.py: 8-channel WAVs once crashed the
decoder). The test suite runs the same strategies, bounded
and with a fixed seed (tests/integration/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import audio_layouts  # noqa: E402
from bench.common import viewer_offer  # noqa: E402
from streamer.testing import free_port  # noqa: E402

HANG_S = 20.0
"""A request with no answer after this long counts as a hang."""
STATUSES = {400, 401, 403, 404, 405, 408, 413, 415, 429, 503}
"""The 4xx/5xx a caller may be answered with (docs/api.md); 503 only while not ready."""
TEMPLATE = "astronaut"


@dataclass
class Target:
    """A live server and one session on it whose id and token the generated requests may use."""

    url: str
    session_id: str = "0123456789abcdef"
    token: str = "no-token"

    @property
    def hostport(self) -> tuple[str, int]:
        parsed = urllib.parse.urlsplit(self.url)
        return parsed.hostname or "127.0.0.1", parsed.port or 80


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Tally:
    tried: int = 0
    server_errors: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    bad_answers: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def note(self, status: int) -> None:
        self.tried += 1
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1


# --- corpora --------------------------------------------------------------------------------


def _tone(seconds: float = 0.3, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _encode(fmt: str, codec: str, rate: int) -> bytes | None:
    """A short tone in `fmt`/`codec`, or None when this FFmpeg has no such encoder."""
    out = io.BytesIO()
    try:
        with av.open(out, "w", format=fmt) as container:
            stream = container.add_stream(codec, rate=rate)
            stream.layout = "mono"
            samples = _tone(0.3, rate)
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    except (av.FFmpegError, ValueError, KeyError):
        return None
    return out.getvalue()


def audio_corpus() -> dict[str, bytes]:
    """Content type → a real, valid body of that type."""
    corpus: dict[str, bytes] = {}
    for ctype, fmt, codec, rate in (
        ("audio/wav", "wav", "pcm_s16le", 16000),
        ("audio/flac", "flac", "flac", 16000),
        ("audio/ogg", "ogg", "libopus", 48000),
        ("audio/webm", "webm", "libopus", 48000),
        ("audio/mpeg", "mp3", "libmp3lame", 44100),
        ("audio/mp4", "mp4", "aac", 44100),
    ):
        data = _encode(fmt, codec, rate)
        if data:
            corpus[ctype] = data
    for case in audio_layouts.cases():  # every container/codec/channel layout PyAV writes
        corpus[f"{case.content_type};case={case.name.replace('/', '-')}"] = case.data
    pcm = (_tone() * 32767).astype("<i2")
    corpus["audio/pcm;rate=16000"] = pcm.tobytes()
    corpus["audio/L16;rate=16000"] = pcm.astype(">i2").tobytes()
    return corpus


def sdp_offer() -> str:
    return asyncio.run(viewer_offer())


# --- strategies -----------------------------------------------------------------------------

JUNK = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
"""What an HTTP header value may hold (control characters are refused by the HTTP parser itself)."""
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | JUNK,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JUNK, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few bytes flipped, inserted or removed, or cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 6))):
        if not out:
            break
        at = draw(st.integers(0, len(out) - 1))
        kind = draw(st.sampled_from(("flip", "insert", "delete", "truncate")))
        if kind == "flip":
            out[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 64))]
        else:
            del out[at:]
    return bytes(out)


@st.composite
def mutated_sdp(draw: st.DrawFn, offer: str) -> str:
    lines = offer.split("\r\n")
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(("drop", "dup", "junk", "edit")))
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        if kind == "drop" and lines:
            del lines[at]
        elif kind == "dup" and lines:
            lines.insert(at, lines[at])
        elif kind == "junk":
            lines.insert(at, draw(st.sampled_from(("m=", "a=", "c=", "b=", "x="))) + draw(JUNK))
        elif lines:
            line = lines[at]
            cut = draw(st.integers(0, len(line)))
            lines[at] = line[:cut] + draw(JUNK) + line[cut + draw(st.integers(0, 8)) :]
    return "\r\n".join(lines)


def _auth(target: Target) -> st.SearchStrategy[dict[str, str]]:
    good = {"Authorization": f"Bearer {target.token}"}
    return st.sampled_from(
        (
            {},
            good,
            good,
            good,
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic Zm9vOmJhcg=="},
            {"Authorization": "Bearer "},
            {"Authorization": "Bearer \xe9\xff"},
        )
    )


def _not_watched(session_id: str, target: Target) -> str:
    """Another id in place of the watched session's, for the requests that would end it."""
    return "0123456789abcdef" if session_id == target.session_id else session_id


def _routes(target: Target) -> st.SearchStrategy[tuple[str, str]]:
    """(method, path): mostly a route's own method, so most requests reach its handler."""
    sid = st.sampled_from(
        (target.session_id,) * 4 + ("0123456789abcdef", "ZZZ", "..%2f..%2fetc", "a" * 300)
    ) | JUNK.map(lambda s: urllib.parse.quote(s, safe=""))
    fixed = st.sampled_from(
        (
            ("GET", "/"),
            ("GET", "/embed.js"),
            ("GET", "/app.js"),
            ("GET", "/api/templates"),
            ("GET", "/api/stats"),
            ("GET", "/api/musetalk/stats"),
            ("GET", "/metrics"),
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("POST", "/api/sessions"),
            ("POST", "/api/grants"),
            ("GET", "/api/ice-servers"),
            ("POST", f"/whep/{TEMPLATE}"),
            ("OPTIONS", f"/whep/{TEMPLATE}"),
            ("GET", f"/api/templates/{TEMPLATE}/preview.jpg"),
        )
    )
    per_session = sid.flatmap(
        lambda s: st.sampled_from(
            (
                ("GET", f"/api/sessions/{s}"),
                # the watched session must live on: only other ids are deleted
                ("DELETE", f"/api/sessions/{_not_watched(s, target)}"),
                ("POST", f"/api/sessions/{s}/speak"),
                ("POST", f"/api/sessions/{s}/speak"),
                ("POST", f"/api/sessions/{s}/say"),
                ("POST", f"/api/sessions/{s}/interrupt"),
                ("DELETE", f"/whep/{_not_watched(s, target)}"),
                ("PATCH", f"/whep/{s}"),
                ("GET", f"/api/templates/{s}/preview.jpg"),
                ("GET", f"/{s}"),
            )
        )
    )
    any_method = st.sampled_from(("GET", "POST", "DELETE", "PATCH", "OPTIONS", "PUT", "HEAD"))
    route = st.one_of(fixed, per_session)
    own = st.sampled_from((True,) * 9 + (False,))  # hypothesis favours the first: its own method
    return st.tuples(own, route, any_method).map(lambda t: t[1] if t[0] else (t[2], t[1][1]))


@dataclass(frozen=True)
class Corpus:
    """Real inputs to mutate: an SDP offer and a valid body of each accepted audio type."""

    offer: str
    audio: dict[str, bytes]

    def __repr__(self) -> str:  # hypothesis prints the strategy's arguments
        return f"Corpus({len(self.offer)}-byte offer, {sorted(self.audio)})"


def corpus() -> Corpus:
    return Corpus(sdp_offer(), audio_corpus())


@st.composite
def requests(draw: st.DrawFn, target: Target, real: Corpus) -> Request:
    """One generated HTTP request against `target`."""
    offer, corpus = real.offer, real.audio
    method, path = draw(_routes(target))
    query = draw(
        st.sampled_from(("", "?token=" + target.token, "?session=" + target.session_id))
        | JUNK.map(lambda s: "?" + urllib.parse.quote(s, safe="=&"))
    )
    headers = dict(draw(_auth(target)))
    kind = draw(st.sampled_from(("none", "json", "sdp-json", "sdp", "audio", "audio", "audio", "bytes")))
    body = b""
    if kind == "json":
        headers["Content-Type"] = "application/json"
        body = json.dumps(draw(JSON_VALUES)).encode()
    elif kind == "sdp-json":
        headers["Content-Type"] = "application/json"
        fields = {
            "template": draw(st.sampled_from((TEMPLATE, "nope", 7, None))),
            "sdp": draw(mutated_sdp(offer)),
            "type": draw(st.sampled_from(("offer", "answer", 1))),
        }
        body = json.dumps(fields).encode()
    elif kind == "sdp":
        headers["Content-Type"] = "application/sdp"
        body = draw(mutated_sdp(offer)).encode("utf-8", "surrogatepass")
    elif kind == "audio":
        ctype = draw(st.sampled_from(sorted(corpus)))
        headers["Content-Type"] = draw(st.sampled_from((ctype, ctype.split(";")[0] + ";rate=" + draw(HEADER_TEXT))))
        body = draw(mutated(corpus[ctype]))
    elif kind == "bytes":
        headers["Content-Type"] = draw(st.sampled_from(("text/plain", "application/json", "audio/wav", "", "x/y;;")))
        body = draw(st.binary(max_size=2048))
    if method == "DELETE" and target.session_id in path:
        headers["Authorization"] = "Bearer wrong"  # the session under test must stay open
    if draw(st.sampled_from((False,) * 5 + (True,))):
        headers["Origin"] = draw(st.sampled_from(("http://evil.example", "null", target.url)))
    if draw(st.sampled_from((False, False, True))):
        headers["X-Forwarded-For"] = draw(st.sampled_from(("203.0.113.1", "junk", "1.1.1.1, 2.2.2.2")))
    return Request(method, path + query, headers, body)


@st.composite
def ws_messages(draw: st.DrawFn) -> list[str | bytes]:
    """A sequence for the audio WebSocket: commands (good and bad) and PCM chunks (odd sizes too)."""
    text = st.sampled_from(
        (
            '{"type":"start","sample_rate":16000}',
            '{"type":"start","sample_rate":7}',
            '{"type":"start"}',
            '{"type":"start","sample_rate":true}',
            '{"type":"end"}',
            '{"type":"interrupt"}',
            '{"type":"x"}',
            "[]",
            "not json",
            '{"type":"start","sample_rate":1e309}',
        )
    ) | JSON_VALUES.map(json.dumps)
    chunk = st.binary(max_size=4000)
    return draw(st.lists(st.one_of(text, chunk), min_size=1, max_size=12))


# --- checks ---------------------------------------------------------------------------------


def send(target: Target, request: Request, tally: Tally) -> None:
    """Send one request; record a 5xx, a hang, or an answer that is not a JSON sentence."""
    conn = http.client.HTTPConnection(*target.hostport, timeout=HANG_S)
    label = f"{request.method} {request.path[:120]} {request.headers.get('Content-Type', '')}"
    try:
        headers = {**request.headers, "Content-Length": str(len(request.body))}
        conn.request(request.method, request.path, body=request.body, headers=headers)
        response = conn.getresponse()
        body = response.read()
    except TimeoutError:
        tally.hangs.append(label)
        return
    finally:
        conn.close()
    tally.note(response.status)
    if response.status >= 500 and response.status != 503:
        tally.server_errors.append(f"{response.status} {label}: {body[:200]!r}")
    elif response.status >= 400 and request.method != "HEAD":
        try:
            message = json.loads(body)["error"]
            assert isinstance(message, str) and message
        except (ValueError, KeyError, TypeError, AssertionError):
            tally.bad_answers.append(f"{response.status} {label}: {body[:200]!r}")


async def send_ws(target: Target, messages: list[str | bytes], tally: Tally) -> None:
    """Play `messages` on the audio socket; every answer must be JSON, the close code not 1011."""
    import aiohttp

    url = f"{target.url}/api/sessions/{target.session_id}/audio?token={target.token}"
    async with (
        aiohttp.ClientSession() as http_,
        http_.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws,
    ):
        for message in messages:
            await (ws.send_str(message) if isinstance(message, str) else ws.send_bytes(message))
        await ws.send_str('{"type":"interrupt"}')  # leave the session with nothing open
        await ws.close()
        if ws.close_code not in (None, 1000, 1001):
            tally.server_errors.append(f"websocket closed {ws.close_code}")
    tally.note(101)


# --- the long run ---------------------------------------------------------------------------


def _failures(tally: Tally) -> int:
    return len(tally.server_errors) + len(tally.hangs) + len(tally.bad_answers)


def _raise_new(tally: Tally, before: int) -> None:
    if _failures(tally) > before:
        raise AssertionError((tally.server_errors + tally.hangs + tally.bad_answers)[-1])


def http_batch(target: Target, real: Corpus, tally: Tally, examples: int, seed: int, strict: bool = False) -> None:
    """`examples` generated HTTP requests, recorded in `tally`; `strict` (the test suite) raises
    at the first failure, so hypothesis shrinks it to a minimal example."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as with_seed

    @with_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(requests(target, real))
    def batch(request: Request) -> None:
        before = _failures(tally)
        send(target, request, tally)
        if strict:
            _raise_new(tally, before)

    with _others_use_random():
        batch()


@contextmanager
def _others_use_random() -> Iterator[None]:
    """Hypothesis warns when `random`'s state moves during an example; here the watched session's
    aiortc (another thread) and aiohttp's WebSocket masks move it, not the strategies."""
    from hypothesis.errors import HypothesisDeprecationWarning

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Do not use the `random` module", category=HypothesisDeprecationWarning
        )
        yield


def ws_batch(target: Target, tally: Tally, examples: int, seed: int, strict: bool = False) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as with_seed

    @with_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(ws_messages())
    def batch(messages: list[str | bytes]) -> None:
        before = _failures(tally)
        try:
            asyncio.run(asyncio.wait_for(send_ws(target, messages, tally), HANG_S))
        except TimeoutError:
            tally.hangs.append(f"websocket {messages[:3]!r}")
        if strict:
            _raise_new(tally, before)

    with _others_use_random():
        batch()


def _serve(port: int, cache: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STREAMER_CACHE_DIR": str(cache),
        "STREAMER_LOG_LEVEL": "WARNING",
        "STREAMER_IDLE_TIMEOUT_S": "0",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "run.py", "serve", "--port", str(port), "--renderer", "lite"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _logged_errors(log: str) -> list[str]:
    """The last lines of each traceback the server logged (what a 5xx came from)."""
    out = []
    for block in log.split("Traceback (most recent call last):")[1:]:
        lines = [line for line in block.splitlines() if line.strip()]
        tail = next((i for i, line in enumerate(lines) if not line.startswith(" ")), len(lines) - 1)
        out.append("\n".join(lines[max(0, tail - 4) : tail + 1]))
    return out


async def _fuzz(url: str, minutes: float, seed: int, tally: Tally, server: subprocess.Popen[bytes]) -> dict[str, Any]:
    from streamer.client import Client

    viewer = Client(url)
    await viewer.connect(TEMPLATE)
    await viewer.wait_frames(5)
    target = Target(url, viewer.session_id, viewer.token)
    real = Corpus(await viewer_offer(), audio_corpus())
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + minutes * 60
    rounds, streaming = 0, True
    while time.monotonic() < deadline and server.poll() is None:
        await loop.run_in_executor(None, http_batch, target, real, tally, 100, seed + rounds)
        await loop.run_in_executor(None, ws_batch, target, tally, 10, seed + rounds)
        rounds += 1
        try:
            await viewer.wait_frames(5, timeout=30)  # the open session still streams: 5 more frames
        except TimeoutError:
            streaming = False
            break
    await viewer.close()
    return {"rounds": rounds, "session_kept_streaming": streaming, "formats": sorted(real.audio)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    from bench.common import machine, wait_ready

    tally = Tally()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        server = _serve(port, Path(tmp) / "cache", log)
        try:
            wait_ready(url, server)
            run = asyncio.run(_fuzz(url, args.minutes, args.seed, tally, server))
            crashed = server.poll() is not None
        finally:
            server.terminate()
            server.wait(60)
        logged = _logged_errors(log.read_text(errors="replace"))
    return {
        "bench": "fuzz",
        "machine": machine(),
        "minutes": args.minutes,
        "seed": args.seed,
        "seconds": round(time.monotonic() - started, 1),
        "inputs_tried": tally.tried,
        "5xx": len(tally.server_errors),
        "hangs": len(tally.hangs),
        "crashes": int(crashed),
        "non_json_errors": len(tally.bad_answers),
        "statuses": tally.statuses,
        "examples": (tally.server_errors + tally.hangs + tally.bad_answers)[:5],
        "server_tracebacks": logged[:5],
        **run,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
