"""Per-client and per-session limits, as pure rules the registry and the API apply."""

from __future__ import annotations

from streamer.config import Settings, is_loopback_host
from streamer.errors import Busy, Forbidden


def check_client(settings: Settings, client: str | None, open_clients: list[str], from_proxy: bool = False) -> None:
    """Refuse one more session from `client` past `max_sessions_per_client`.

    Loopback clients (tests, benches, a backend on the same machine) are not limited, but only
    when the connection itself comes from loopback: an address a forwarding header names never
    is exempt. Behind a reverse proxy, set `trusted_proxies` so the viewers' own addresses count.
    """
    if client is None or (is_loopback_host(client) and not from_proxy):
        return
    held = sum(1 for c in open_clients if c == client)
    if held >= settings.max_sessions_per_client:
        raise Busy(f"{client} holds its limit of {settings.max_sessions_per_client} sessions: close one first")


def limit_reached(settings: Settings, age_s: float, longest_s: float, idle_s: float) -> str | None:
    """`limit` past the session's maximum length, `idle` after `idle_timeout_s` without speech."""
    if age_s >= longest_s:
        return "limit"
    if settings.idle_timeout_s > 0 and idle_s >= settings.idle_timeout_s:
        return "idle"
    return None


CRASHES_ALLOWED = 3
"""Uploads of one session that may crash (or stall) a decoder before its uploads are refused."""


def check_uploads(settings: Settings, in_flight: int, crashes: int = 0) -> None:
    if crashes >= CRASHES_ALLOWED:
        raise Forbidden(f"{crashes} uploads of this session crashed the audio decoder: it may upload no more")
    if in_flight >= settings.max_uploads_per_session:
        raise Busy(f"{in_flight} uploads are being decoded for this session: wait for one to finish")


def check_sockets(settings: Settings, open_sockets: int) -> None:
    if open_sockets >= settings.max_sockets_per_session:
        raise Busy(f"this session holds its limit of {settings.max_sockets_per_session} audio sockets: close one first")
