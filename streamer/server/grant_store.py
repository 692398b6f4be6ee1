"""Where used grants are remembered until they expire: this process, or a shared Redis.

One server keeps them in memory (`grant_store = "memory"`). Servers behind one load balancer,
or one that restarts while grants are valid, share a Redis (`grant_store = "redis://…"`): a
grant is claimed there with `SET NX` and the grant's expiry, so it opens one session across
all of them, and again after no restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamer.errors import NotReady

log = logging.getLogger(__name__)
KEY_PREFIX = "streamer:grant:"


class GrantStore(Protocol):
    async def claim(self, jti: str, expires: int) -> bool:
        """True the first time `jti` is claimed; False when it was claimed before."""

    async def used(self, jti: str) -> bool: ...

    async def close(self) -> None: ...


@dataclass
class ReplayStore:
    """Grant ids already redeemed, each kept until its grant's expiry, then pruned."""

    clock: Callable[[], float] = time.time
    _used: dict[str, int] = field(default_factory=dict)

    def claim(self, jti: str, expires: int) -> bool:
        """True the first time `jti` is claimed; False when it was redeemed before."""
        self.prune()
        if jti in self._used:
            return False
        self._used[jti] = expires
        return True

    def prune(self) -> None:
        now = self.clock()
        for jti in [j for j, exp in self._used.items() if exp < now]:
            del self._used[jti]

    def __len__(self) -> int:
        return len(self._used)

    def __contains__(self, jti: object) -> bool:
        return jti in self._used


class MemoryStore:
    """This process's memory: right for one server, forgotten on restart."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.replays = ReplayStore(clock)

    async def claim(self, jti: str, expires: int) -> bool:
        return self.replays.claim(jti, expires)

    async def used(self, jti: str) -> bool:
        self.replays.prune()
        return jti in self.replays

    async def close(self) -> None:
        return None


class RedisStore:
    """A Redis every server shares (redis.asyncio, connected on first use in the server's loop)."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        self._url = url
        self._clock = clock
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            try:
                import redis.asyncio as aioredis
            except ImportError:
                raise NotReady(
                    "grant_store is a Redis URL but the redis package is missing: pip install 'streamer[redis]'"
                ) from None
            self._client = aioredis.from_url(self._url, socket_timeout=5, socket_connect_timeout=5)
        return self._client

    async def claim(self, jti: str, expires: int) -> bool:
        ttl = max(1, int(expires - self._clock()) + 1)
        return bool(await self._call("set", KEY_PREFIX + jti, b"1", nx=True, ex=ttl))

    async def used(self, jti: str) -> bool:
        return bool(await self._call("exists", KEY_PREFIX + jti))

    async def _call(self, command: str, *args: Any, **kwargs: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await getattr(self._redis(), command)(*args, **kwargs)
        except (RedisError, OSError) as exc:
            log.error("grant store %s failed: %s", command, exc)
            raise NotReady("the grant store is unreachable: try again shortly") from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def create_store(url: str, clock: Callable[[], float] = time.time) -> GrantStore:
    return MemoryStore(clock) if url == "memory" else RedisStore(url, clock)
