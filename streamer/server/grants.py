"""Session grants: short-lived, single-use signed tokens a public page opens one session with.

A backend holding the server key mints a grant (`POST /api/grants`); the browser presents it
as `Authorization: Bearer <grant>` when it opens its session, and never sees the key. A grant
is a JWT (PyJWT, HS256 only, `exp`, `jti` and the audience required). Its `jti` is remembered
until the grant would have expired, so a grant opens one session at most.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from streamer.errors import BadInput, Unauthorized
from streamer.server.grant_store import GrantStore, MemoryStore, ReplayStore

__all__ = ["Grant", "Grants", "ReplayStore", "grant_request", "signing_key"]

ALGORITHM = "HS256"
AUDIENCE = "streamer-session"
DERIVE_LABEL = b"streamer session grants v1"
USED = "the grant has been used already: each grant opens one session"


@dataclass(frozen=True)
class Grant:
    """What a verified grant allows."""

    jti: str
    templates: tuple[str, ...]
    expires: int
    max_session_s: float | None


def signing_key(secret: str) -> bytes:
    """A 32-byte HMAC key for grants only, so a grant never doubles as anything keyed by `secret`."""
    return hmac.new(secret.encode(), DERIVE_LABEL, hashlib.sha256).digest()


class Grants:
    """Mints and redeems grants with one secret and an injectable clock."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time, store: GrantStore | None = None) -> None:
        self._key = signing_key(secret)
        self._clock = clock
        self.store: GrantStore = store if store is not None else MemoryStore(clock)

    def mint(self, templates: tuple[str, ...], ttl_s: float, max_session_s: float | None = None) -> tuple[str, int]:
        """The signed grant and its expiry (unix seconds)."""
        now = int(self._clock())
        expires = now + max(1, round(ttl_s))
        claims: dict[str, Any] = {
            "aud": AUDIENCE,
            "iat": now,
            "exp": expires,
            "jti": secrets.token_urlsafe(16),
            "templates": list(templates),
        }
        if max_session_s is not None:
            claims["max_session_s"] = max_session_s
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), expires

    def verify(self, token: str) -> Grant:
        """The grant's claims; `Unauthorized` when it is not a valid, unexpired grant of ours."""
        if not token.isascii():  # a header may carry undecodable bytes (surrogate escapes)
            raise Unauthorized("the grant is not valid (not a JWT)")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["exp", "jti", "aud"]},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the grant has expired: ask the page's backend for a fresh one") from None
        except jwt.PyJWTError:
            raise Unauthorized("the grant is not valid (bad signature, algorithm, audience or claims)") from None
        templates = claims.get("templates")
        limit = claims.get("max_session_s")
        if not isinstance(templates, list) or not all(isinstance(t, str) for t in templates):
            raise Unauthorized("the grant names no templates")
        if limit is not None and not isinstance(limit, (int, float)):
            raise Unauthorized("the grant's max_session_s is not a number")
        return Grant(str(claims["jti"]), tuple(templates), int(claims["exp"]), limit)

    def check(self, grant: Grant, template_id: str) -> Grant:
        if template_id not in grant.templates:
            raise Unauthorized(f"the grant is not for template {template_id!r}")
        return grant

    async def unused(self, token: str) -> Grant:
        """The verified grant, when it has not opened a session yet (nothing is used up)."""
        grant = self.verify(token)
        if await self.store.used(grant.jti):
            raise Unauthorized(USED)
        return grant

    async def use(self, grant: Grant) -> None:
        """Use the grant up (atomically, across servers sharing the store); 401 when it was already."""
        if not await self.store.claim(grant.jti, grant.expires):
            raise Unauthorized(USED)

    async def redeem(self, token: str, template_id: str) -> Grant:
        """Verify the grant for `template_id` and use it up; a second redeem is refused."""
        grant = self.check(self.verify(token), template_id)
        await self.use(grant)
        return grant


@dataclass(frozen=True)
class GrantRequest:
    """The body of `POST /api/grants`, checked."""

    templates: tuple[str, ...]
    ttl_s: float
    max_session_s: float | None


def grant_request(body: dict[str, Any], default_ttl_s: float, max_ttl_s: float) -> GrantRequest:
    templates = body.get("templates")
    if not isinstance(templates, list) or not templates or not all(isinstance(t, str) for t in templates):
        raise BadInput("`templates` must be a non-empty list of template ids")
    ttl = body.get("ttl_s", default_ttl_s)
    limit = body.get("max_session_s")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 1 <= ttl <= max_ttl_s:
        raise BadInput(f"`ttl_s` must be a number of seconds from 1 to {max_ttl_s:.0f}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0):
        raise BadInput("`max_session_s` must be a positive number of seconds")
    return GrantRequest(tuple(templates), float(ttl), None if limit is None else float(limit))
