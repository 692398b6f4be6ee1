"""ICE servers as settings: URLs that fit an environment variable, coturn REST credentials.

`stun:host:3478`, `turn:user:pass@host:3478?transport=tcp`, `turns:host:5349`, comma-separated.
None by default, so the server contacts no outside host unless told to. TURN URLs written
without `user:pass` get short-lived credentials from the coturn shared secret (`turn_secret`,
coturn's `use-auth-secret` REST scheme): username `<expiry>:<name>`, password
base64(HMAC-SHA1(secret, username)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import socket
import time
from dataclasses import dataclass, replace
from urllib.parse import unquote

from streamer.errors import BadInput

URL = re.compile(
    r"(?P<scheme>stuns?|turns?):(?:(?P<user>[^:@/?]+):(?P<password>[^@/?]+)@)?"
    r"(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)


@dataclass(frozen=True)
class IceServer:
    scheme: str
    host: str
    port: int
    transport: str | None = None
    username: str | None = None
    credential: str | None = None

    @property
    def url(self) -> str:
        """The URL without credentials (what RTCIceServer.urls and a `Link` header carry)."""
        tail = f"?transport={self.transport}" if self.transport else ""
        return f"{self.scheme}:{self.host}:{self.port}{tail}"

    @property
    def is_turn(self) -> bool:
        return self.scheme.startswith("turn")


def parse_ice_url(text: str) -> IceServer:
    match = URL.fullmatch(text.strip())
    if match is None:
        raise BadInput(f"ice server {text!r} is not a stun:/turn: URL (e.g. turn:user:pass@host:3478)")
    scheme, transport = match["scheme"], match["transport"]
    if scheme.startswith("stun") and transport:
        raise BadInput(f"ice server {text!r}: a STUN URL takes no transport")
    if scheme.startswith("stun") and match["user"]:
        raise BadInput(f"ice server {text!r}: a STUN URL takes no credentials")
    port = int(match["port"] or (5349 if scheme.endswith("s") else 3478))
    if not 1 <= port <= 65535:
        raise BadInput(f"ice server {text!r}: port out of range")
    if scheme == "turns":
        transport = "tcp"
    user = unquote(match["user"]) if match["user"] else None
    password = unquote(match["password"]) if match["password"] else None
    return IceServer(scheme, match["host"], port, transport, user, password)


def parse_ice_servers(urls: tuple[str, ...]) -> list[IceServer]:
    return [parse_ice_url(u) for u in urls]


def rest_credentials(secret: str, name: str, ttl_s: float, now: float) -> tuple[str, str]:
    """coturn's shared-secret scheme: a username that expires and its HMAC-SHA1 password."""
    username = f"{int(now + ttl_s)}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def servers_for(
    urls: tuple[str, ...],
    turn_secret: str | None,
    turn_ttl_s: float,
    name: str = "viewer",
    now: float | None = None,
) -> list[IceServer]:
    """The configured servers, TURN ones without credentials given REST credentials."""
    out = []
    for server in parse_ice_servers(urls):
        if server.is_turn and server.username is None and turn_secret:
            user, password = rest_credentials(turn_secret, name, turn_ttl_s, time.time() if now is None else now)
            server = replace(server, username=user, credential=password)
        out.append(server)
    return out


def link_header(server: IceServer, with_credentials: bool) -> str | None:
    """One WHEP `Link: <url>; rel="ice-server"` value; None for a TURN server without credentials."""
    value = f'<{server.url}>; rel="ice-server"'
    if server.is_turn:
        if not with_credentials or server.username is None:
            return None
        value += f'; username="{server.username}"; credential="{server.credential}"; credential-type="password"'
    return value


def browser_json(servers: list[IceServer], with_credentials: bool) -> list[dict[str, str]]:
    """RTCConfiguration.iceServers for a page; TURN only for a caller holding a grant or token."""
    out = []
    for s in servers:
        if s.is_turn and (not with_credentials or s.username is None):
            continue
        entry = {"urls": s.url}
        if s.is_turn:
            entry |= {"username": s.username or "", "credential": s.credential or ""}
        out.append(entry)
    return out


RESOLVED: dict[str, str] = {}
"""Host name → IPv4 address of the ICE servers, filled once at start-up by `resolve`."""


def resolve(urls: tuple[str, ...]) -> dict[str, str]:
    """Look the ICE servers' names up once (blocking: the server runs it on its own thread).

    aiortc would otherwise resolve them for every session on the default executor that
    compositing and encoding share. `turns:` keeps its name (TLS checks it).
    """
    for s in parse_ice_servers(urls):
        if s.scheme == "turns" or s.host.startswith("[") or s.host in RESOLVED:
            continue
        try:
            RESOLVED[s.host] = socket.gethostbyname(s.host)
        except OSError:
            continue  # unreachable now: left to aiortc, which then skips it
    return dict(RESOLVED)


def peer_servers(servers: list[IceServer]) -> list[IceServer]:
    """The servers as the server's own peer connections use them: names already resolved."""
    return [replace(s, host=RESOLVED.get(s.host, s.host)) for s in servers]


def unreachable_warning(host_is_loopback: bool, urls: tuple[str, ...]) -> str | None:
    if host_is_loopback or urls:
        return None
    return (
        "no ice_servers are set: viewers outside this machine's network may not reach the media, "
        "and a cloud VM behind 1:1 NAT needs a STUN server (ice_servers = stun:…) to learn its "
        "public address; viewers behind UDP-blocking firewalls need TURN (see docs/deploy.md)"
    )
