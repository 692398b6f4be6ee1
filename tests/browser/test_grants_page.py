"""The .NET flow on a keyed server, no key in any page: a C# console program (mono) mints a
grant, a static page holding only that grant connects in Chromium, speaks and closes; a
reused, expired or tampered grant gets 401."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from streamer.server.grants import Grants
from tests.browser.harness import TEMPLATE, Recorder
from tests.integration.test_dotnet import build_program, dotnet_available
from tests.served import serve

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not dotnet_available(), reason="Mono (mcs, mono, System.Net.Http) is not installed"),
]

KEY = "grant-page-server-key-0123456789"
ELEMENT = "document.querySelector('digital-human')"


def mint(program: Path, server: str) -> str:
    """What a .NET backend does: POST /api/grants with the key (which stays on this side). Ten
    minutes to live: on a loaded machine the page test outlived a 60 s grant, and then its
    reuse read as expiry (an expired grant is tested on its own below)."""
    out = subprocess.run(
        ["mono", str(program), "grant", server, TEMPLATE, "600"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"DIGITAL_HUMAN_KEY": KEY, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    return dict(line.split("=", 1) for line in out.stdout.splitlines())["grant"]


def page_with(server: str, grant: str) -> str:
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>grant</title><link rel="icon" href="data:,">
<script src="{server}/embed.js"></script></head>
<body><digital-human server="{server}" template="{TEMPLATE}" grant="{grant}"></digital-human></body></html>"""


def refused(page) -> dict:
    return page.evaluate(
        f"""() => new Promise((resolve) => {{
          {ELEMENT}.addEventListener('error', (e) => resolve(e.detail), {{ once: true }});
          {ELEMENT}.connect().catch(() => {{}});
        }})"""
    )


def test_a_page_with_only_a_grant_connects_speaks_and_closes(page, site, tmp_path: Path) -> None:
    port, pages = site
    program = build_program(tmp_path / "dh.exe")
    with serve("--renderer", "lite", "--key", KEY, "--cors", f"http://127.0.0.1:{port}") as url:
        grant = mint(program, url)
        pages["/grant.html"] = page_with(url, grant)
        page.goto(f"http://127.0.0.1:{port}/grant.html")
        page.wait_for_function("() => customElements.get('digital-human') !== undefined")
        assert KEY not in page.content()
        rec = Recorder(page)
        rec.start(f"{ELEMENT}.session && {ELEMENT}.session.pc", ELEMENT)
        page.evaluate(f"() => {{ {ELEMENT}.connect(); }}")
        rec.wait_event("connected")
        rec.wait_frames(10)
        since = rec.event_count()
        said = page.evaluate(f"() => {ELEMENT}.say('Hello from a page that holds no key.')")
        rec.wait_event("speaking-started", since)
        ended = rec.wait_event("speaking-ended", since)
        assert ended["detail"]["utterance_id"] == said["utterance_id"]
        assert rec.summary(rec.wait_event("speaking-started", since)["t"], ended["t"])["maxLevel"] > 0.01
        page.evaluate(f"() => {ELEMENT}.close()")
        assert page.evaluate(f"() => {ELEMENT}.session") is None

        # The same grant again (a reload that kept it): used up.
        page.reload()
        page.wait_for_function("() => customElements.get('digital-human') !== undefined")
        detail = refused(page)
        assert detail["status"] == 401 and "used already" in detail["message"], detail

        # Expired, and tampered with.
        expired, _ = Grants(KEY, clock=lambda: time.time() - 600).mint((TEMPLATE,), 60)
        tampered = mint(program, url)[:-4] + "AAAA"
        for bad, why in ((expired, "expired"), (tampered, "not valid")):
            pages["/grant.html"] = page_with(url, bad)
            page.goto(f"http://127.0.0.1:{port}/grant.html")
            page.wait_for_function("() => customElements.get('digital-human') !== undefined")
            detail = refused(page)
            assert detail["status"] == 401 and why in detail["message"], detail
