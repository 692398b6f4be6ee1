"""Who may do what: the server key and per-session tokens, checked in constant time."""

from __future__ import annotations

import hmac

from streamer.errors import Unauthorized


def bearer_matches(authorization: str | None, secret: str | None) -> bool:
    """`Authorization: Bearer <secret>`, compared in constant time (any input, no exception)."""
    scheme, _, credential = (authorization or "").partition(" ")
    if not secret or scheme.lower() != "bearer" or not credential:
        return False
    return hmac.compare_digest(credential.strip().encode(), secret.encode())


def require_key(authorization: str | None, key: str | None) -> None:
    """When the server has a key, opening a session needs it too."""
    if key is not None and not bearer_matches(authorization, key):
        raise Unauthorized("this server needs its key to open sessions (Authorization: Bearer <key>)")
