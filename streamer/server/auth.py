"""Bearer credentials, compared in constant time (the request-level rules: server/guard.py)."""

from __future__ import annotations

import hmac


def bearer_matches(authorization: str | None, secret: str | None) -> bool:
    """`Authorization: Bearer <secret>`, compared in constant time (any input, no exception)."""
    scheme, _, credential = (authorization or "").partition(" ")
    if not secret or scheme.lower() != "bearer" or not credential:
        return False
    # Headers may carry undecodable bytes as surrogate escapes: compare them as they came.
    return hmac.compare_digest(credential.strip().encode("utf-8", "surrogateescape"), secret.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The credential of `Bearer <credential>`, or None."""
    scheme, _, credential = (authorization or "").partition(" ")
    return (credential.strip() or None) if scheme.lower() == "bearer" else None
