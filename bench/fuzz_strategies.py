"""Hypothesis strategies for bench/fuzz.py: HTTP requests to every route of a live server, mutated
SDP offers and audio bodies, and message sequences for the audio WebSocket."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass

from hypothesis import strategies as st

from bench.fuzz_corpus import Corpus

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
