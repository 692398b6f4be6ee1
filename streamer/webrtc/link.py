"""One session's link quality as its video sender's RTCP tells it, fed to the ladder.

Every `POLL_S` the controller reads the sender's stats (the viewer's receiver reports: loss and
round-trip time; our sent packets and bytes) and hands the loss to the ladder. NACKs and
keyframe requests (PLI/FIR) are counted as the sender handles them, and a packet is resent at
most once per `RETRANSMIT_GAP_S`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from streamer.webrtc import hooks
from streamer.webrtc.ladder import Ladder

POLL_S = 1.0
RETRANSMIT_GAP_S = 0.1
"""A packet NACKed again this soon after it was resent is not resent again: its resend is on
the way (aiortc's sender resends every NACKed packet every time it is asked)."""


@dataclass
class LinkQuality:
    loss: float = 0.0
    """Fraction of our packets lost since the viewer's previous report (0–1)."""
    packets_lost: int = 0
    rtt_ms: float | None = None
    nacks: int = 0
    resends_skipped: int = 0
    plis: int = 0
    bitrate_kbps: float = 0.0
    """What the video sender actually sent over the last poll (resends included)."""
    encoder_kbps: float = 0.0
    """What the video encoder produced over the last second."""
    target_kbps: float = 0.0
    remb_kbps: float | None = None
    step: int = 0
    steps: int = 0
    step_changes: int = 0
    width_scale: float = 1.0


class LinkController:
    """Watches the video sender's link, throttles its resends, and drives the bitrate ladder
    from the viewer's loss reports."""

    def __init__(
        self,
        sender: Any,
        ladder: Ladder,
        on_poll: Callable[[LinkQuality], None] | None = None,
    ) -> None:
        self._sender = sender
        self.ladder = ladder
        self.quality = LinkQuality(steps=len(ladder.steps))
        self._on_poll = on_poll
        self._last: tuple[float, int] | None = None
        self._count(sender)

    def _count(self, sender: Any) -> None:
        """Count the NACKed packets and keyframe requests the sender serves (wrapping its own
        handlers on this instance only)."""
        resent: dict[int, float] = {}

        async def counted_retransmit(original: Callable[[int], Awaitable[None]], sequence_number: int) -> None:
            self.quality.nacks += 1
            now = time.monotonic()
            if now - resent.get(sequence_number, -math.inf) < RETRANSMIT_GAP_S:
                self.quality.resends_skipped += 1
                return
            resent[sequence_number] = now
            if len(resent) > 1024:
                for old in [k for k, t in resent.items() if t < now - 1.0]:
                    del resent[old]
            await original(sequence_number)

        def counted_keyframe(original: Callable[[], None]) -> None:
            self.quality.plis += 1
            original()

        hooks.wrap_handlers(sender, counted_retransmit, counted_keyframe)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            await self.poll()

    async def poll(self) -> LinkQuality:
        report = await self._sender.getStats()
        q = self.quality
        for stats in report.values():
            if stats.type == "remote-inbound-rtp":
                q.loss = stats.fractionLost / 256  # RTCP's 8-bit fixed point
                q.packets_lost = int(stats.packetsLost)
                q.rtt_ms = round(stats.roundTripTime * 1000, 1) if stats.roundTripTime is not None else None
            elif stats.type == "outbound-rtp":
                now = stats.timestamp.timestamp()
                if self._last is not None and now > self._last[0]:
                    q.bitrate_kbps = round(
                        (stats.bytesSent - self._last[1]) * 8 / (now - self._last[0]) / 1000,
                        1,
                    )
                self._last = (now, stats.bytesSent)
        self.ladder.on_loss(q.loss)
        step = self.ladder.step
        q.step, q.step_changes, q.width_scale = (
            self.ladder.index,
            self.ladder.changes,
            step.scale,
        )
        q.target_kbps = step.bitrate / 1000
        q.encoder_kbps = self.ladder.sent_bitrate() / 1000
        q.remb_kbps = self.ladder.remb / 1000 if self.ladder.remb is not None else None
        if self._on_poll is not None:
            self._on_poll(q)
        return q

    def describe(self) -> dict[str, Any]:
        return asdict(self.quality)
