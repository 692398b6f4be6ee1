"""A UDP port range for the media, so a firewall can be opened for it (`ice_port_min/max`).

aioice binds each host candidate with `create_datagram_endpoint(local_addr=(address, 0))`
and has no port option; on the server's event loop, that call gets a port from the range
instead of 0. Only unconnected endpoints asking for "any port" are affected.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import random
from typing import Any

from streamer.errors import Busy


def install(loop: asyncio.AbstractEventLoop, port_min: int, port_max: int) -> None:
    """Make `loop` bind "any port" UDP endpoints inside [port_min, port_max]."""
    original = loop.create_datagram_endpoint
    if getattr(original, "port_range", None) == (port_min, port_max):
        return
    base = getattr(original, "original", original)
    span = port_max - port_min + 1
    start = itertools.count(random.randrange(span))

    async def ranged(protocol_factory: Any, local_addr: Any = None, remote_addr: Any = None, **kw: Any) -> Any:
        if local_addr is None or remote_addr is not None or local_addr[1] != 0 or "sock" in kw:
            return await base(protocol_factory, local_addr=local_addr, remote_addr=remote_addr, **kw)
        first = next(start)
        for i in range(span):
            port = port_min + (first + i) % span
            try:
                return await base(protocol_factory, local_addr=(local_addr[0], port), **kw)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise Busy(f"every UDP port from {port_min} to {port_max} is in use")

    ranged.port_range = (port_min, port_max)  # type: ignore[attr-defined]
    ranged.original = base  # type: ignore[attr-defined]
    loop.create_datagram_endpoint = ranged  # type: ignore[method-assign]
