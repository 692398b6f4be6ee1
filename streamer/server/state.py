"""What the server knows of its own start-up and shutdown, for /readyz and the stats."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Startup:
    ready: bool = False
    phase: str = "starting workers"
    """`starting workers`, `preparing <id>`, `ready`, `no usable template`, `failed`, `draining`."""
    error: str | None = None
    """Why start-up failed, for the log and the keyed stats only (it may hold paths)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Template id → why it is not available (keyed stats only)."""
    discovered: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    draining: bool = False
