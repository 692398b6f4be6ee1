"""WHEP: a minimal client written against draft-ietf-wish-whep receives the stream."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.browser.harness import TEMPLATE, Recorder

pytestmark = pytest.mark.browser

WHEP_CLIENT_JS = """
async (endpoint) => {
  // The whole of a WHEP player: offer (ICE complete, no trickle), POST, answer.
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const video = Object.assign(document.createElement("video"), { autoplay: true, playsInline: true });
  video.srcObject = new MediaStream();
  pc.addEventListener("track", (e) => video.srcObject.addTrack(e.track));
  document.body.append(video);
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== "complete") {
    await new Promise((resolve) => pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && resolve()));
  }
  const response = await fetch(endpoint, {
    method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp,
  });
  const answer = await response.text();
  const result = {
    status: response.status,
    contentType: response.headers.get("Content-Type"),
    location: response.headers.get("Location"),
    link: response.headers.get("Link"),
    token: response.headers.get("X-Session-Token"),
  };
  if (response.status === 201) await pc.setRemoteDescription({ type: "answer", sdp: answer });
  window.whep = { pc, resource: new URL(result.location, endpoint).href, token: result.token };
  return result;
}
"""

DELETE_JS = """
async () => (await fetch(window.whep.resource, {
  method: "DELETE", headers: { Authorization: `Bearer ${window.whep.token}` },
})).status
"""


PATCH_JS = """
async () => {
  const r = await fetch(window.whep.resource, {
    method: "PATCH", headers: { "Content-Type": "application/trickle-ice-sdpfrag" },
    body: "a=ice-ufrag:abcd\\r\\na=candidate:1 1 udp 2113937151 192.0.2.1 50000 typ host\\r\\n",
  });
  return { status: r.status, error: (await r.json()).error };
}
"""


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def test_a_whep_player_receives_video_and_can_end_the_session(page, server: str, site) -> None:
    port, pages = site
    pages["/whep.html"] = '<!doctype html><title>whep</title><link rel="icon" href="data:,">'
    page.goto(f"http://127.0.0.1:{port}/whep.html")  # another origin, allowed by --cors
    result = page.evaluate(WHEP_CLIENT_JS, f"{server}/whep/{TEMPLATE}")
    assert result["status"] == 201, result
    assert result["contentType"].startswith("application/sdp")
    assert result["location"].startswith("/whep/") and result["token"], result
    session_id = result["location"].rsplit("/", 1)[1]
    assert result["link"] == f'</api/sessions/{session_id}>; rel="session"'

    rec = Recorder(page)
    rec.start("window.whep.pc", "window")
    rec.wait_frames(10)
    t0 = rec.now()
    rec.wait_frames(50)
    figures = rec.summary(t0, rec.now())
    assert figures["fps"] > 20 and figures["width"] > 0, figures
    assert figures["samples"] > 0, figures

    status, _, body = http(
        "GET", f"{server}/api/sessions/{session_id}", headers={"Authorization": f"Bearer {result['token']}"}
    )
    assert status == 200 and b'"template"' in body

    # A trickling player PATCHes its candidates: the preflight allows PATCH, the answer is 405.
    patched = page.evaluate(PATCH_JS)
    assert patched["status"] == 405 and "trickle" in patched["error"], patched
    assert http("DELETE", f"{server}/whep/{session_id}", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert page.evaluate(DELETE_JS) == 200
    status, _, _ = http(
        "GET", f"{server}/api/sessions/{session_id}", headers={"Authorization": f"Bearer {result['token']}"}
    )
    assert status == 404
    assert [p for p in page.problems if "405" not in p] == []  # Chromium logs the 405 itself; no CORS error


def test_on_a_keyless_loopback_server_the_player_that_created_the_resource_deletes_it(page, server: str, site) -> None:
    port, pages = site
    pages["/whep.html"] = '<!doctype html><title>whep</title><link rel="icon" href="data:,">'
    page.goto(f"http://127.0.0.1:{port}/whep.html")
    result = page.evaluate(WHEP_CLIENT_JS, f"{server}/whep/{TEMPLATE}")
    assert result["status"] == 201, result
    deleted = page.evaluate("async () => (await fetch(window.whep.resource, { method: 'DELETE' })).status")
    assert deleted == 200  # it knows nothing of X-Session-Token, and needs nothing else
    assert page.problems == []


def test_options_advertises_sdp_and_cors(server: str, site) -> None:
    port, _ = site
    origin = f"http://127.0.0.1:{port}"
    status, headers, _ = http("OPTIONS", f"{server}/whep/{TEMPLATE}")
    assert status == 204 and headers["Accept-Post"] == "application/sdp"
    status, headers, _ = http(
        "OPTIONS",
        f"{server}/whep/{TEMPLATE}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert status in (200, 204) and headers["Access-Control-Allow-Origin"] == origin
    assert headers["Accept-Post"] == "application/sdp"
    status, headers, _ = http(
        "OPTIONS",
        f"{server}/whep/{TEMPLATE}",
        headers={
            "Origin": "http://evil.example",
            "Access-Control-Request-Method": "POST",
        },
    )
    assert headers.get("Access-Control-Allow-Origin") is None


def test_bad_requests_are_refused(server: str) -> None:
    sdp = {"Content-Type": "application/sdp"}
    assert http("POST", f"{server}/whep/{TEMPLATE}", b"v=0\r\n", {"Content-Type": "text/plain"})[0] == 415
    assert http("POST", f"{server}/whep/{TEMPLATE}", b"hello", sdp)[0] == 400
    assert http("POST", f"{server}/whep/{TEMPLATE}", b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", sdp)[0] == 400
    offer = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    assert http("POST", f"{server}/whep/no-such-template", offer, sdp)[0] == 404
    assert http("DELETE", f"{server}/whep/0123456789abcdef")[0] == 404
