"""The adaptive ladder: a few bitrate/resolution steps a session moves along as its viewer's
link allows, and the RTCP quality that moves it.

aiortc rebuilds an encoder whenever REMB moves the bitrate by 10 %, so we hold the bitrate
still within a step and move only between steps: one rebuild (a keyframe) per step change,
with hysteresis. Down when the link is congested for `DOWN_HOLD_S` (at once when badly so): the receiver's
estimate (REMB) falling below what the encoder actually sends, or loss above `DOWN_LOSS`; straight to the step
that fits the estimate, so one keyframe, not one per step. Up one step when the link has been
clean for `up_hold_s`: REMB cannot show spare capacity we do not use, so going up is a probe;
a probe that fails within `PROBE_S` doubles the wait before the next one. When a lossy spell
ends the ladder asks for a keyframe (`keyframes`), since frames lost in it may never be repaired.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

STEPS = ((1.0, 1.0), (0.5, 0.75), (0.25, 0.5))
"""(fraction of the target bitrate, fraction of the frame's width and height) per step."""
DOWN_RATIO = 0.85
DOWN_LOSS = 0.08
DOWN_HOLD_S = 1.0
SEVERE_LOSS = 0.25
SEVERE_RATIO = 0.5
"""Loss above SEVERE_LOSS, or REMB below SEVERE_RATIO of what we send: down at once, no hold."""
UP_LOSS = 0.02
UP_HOLD_S = 4.0
MAX_UP_HOLD_S = 32.0
PROBE_S = 6.0
"""A step up followed by a step down within this long was a failed probe."""
DWELL_S = 2.0
"""No two changes within this long: a fresh encoder needs time to show its rate."""
RATE_WINDOW_S = 1.0
REMB_TREND_S = 2.0
"""REMB shows congestion only while it falls (below its highest of this long): a flat or rising
estimate under a rate that just grew is a receiver catching up (a still face sends little,
speech more; the encoders are capped, not padded), however far below the new rate it is."""


@dataclass(frozen=True)
class Step:
    bitrate: int
    scale: float

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The step's frame size for a `width`×`height` source (even, as the encoders need)."""
        if self.scale >= 1.0:
            return width, height
        return max(2, int(width * self.scale) // 2 * 2), max(2, int(height * self.scale) // 2 * 2)


class Ladder:
    """One session's position on the ladder. Fed from the RTP sender (REMB, loss) and from the
    encoder (bytes sent); read by the encoder for the bitrate and frame size to use."""

    def __init__(
        self,
        bitrate: int,
        adaptive: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.steps = tuple(Step(int(bitrate * b), s) for b, s in STEPS)
        self.adaptive = adaptive
        self.index = 0
        self.changes = 0
        self.remb: int | None = None
        self.loss = 0.0
        self._clock = clock
        self._sent: deque[tuple[float, int]] = deque()
        self._rembs: deque[tuple[float, int]] = deque()
        """(time, REMB) of the last REMB_TREND_S."""
        self._remb_armed = False
        """REMB counts only once it has reached what we send: a receiver's estimate starts low
        and ramps up (Chromium's from ~300 kbit/s), which is no congestion."""
        self._bad_since: float | None = None
        self._good_since: float | None = None
        self._changed_at = -math.inf
        self._went_up_at = -math.inf
        self.up_hold_s = UP_HOLD_S
        self._lossy = False
        self.keyframes = 0
        """Keyframes asked for so far; the encoder sends one each time this grows."""

    @property
    def step(self) -> Step:
        return self.steps[self.index]

    def sent_bitrate(self) -> int:
        """Bits per second the encoder produced over the last `RATE_WINDOW_S`."""
        now = self._clock()
        while self._sent and self._sent[0][0] < now - RATE_WINDOW_S:
            self._sent.popleft()
        return int(sum(n for _, n in self._sent) * 8 / RATE_WINDOW_S)

    def on_sent(self, nbytes: int) -> None:
        self._sent.append((self._clock(), nbytes))

    def on_remb(self, bitrate: int) -> None:
        now = self._clock()
        self.remb = int(bitrate)
        self._rembs.append((now, self.remb))
        while self._rembs[0][0] < now - REMB_TREND_S:
            self._rembs.popleft()
        self._update()

    def _remb_falling(self) -> bool:
        return self.remb is not None and self.remb < 0.95 * max(r for _, r in self._rembs)

    def on_loss(self, fraction: float) -> None:
        self.loss = float(fraction)
        self._update()

    def _update(self) -> None:
        if not self.adaptive:
            return
        now = self._clock()
        sent = self.sent_bitrate()
        rate = min(sent, self.step.bitrate)
        window_full = bool(self._sent) and now - self._sent[0][0] >= RATE_WINDOW_S * 0.9
        if self.remb is not None and window_full and self.remb >= rate:
            self._remb_armed = True
        remb = self.remb if self._remb_armed and self._remb_falling() else None
        congested = self.loss > DOWN_LOSS or (remb is not None and remb < DOWN_RATIO * rate)
        severe = self.loss > SEVERE_LOSS or (remb is not None and remb < SEVERE_RATIO * rate)
        clean = self.loss < UP_LOSS and (self.remb is None or self.remb >= min(sent, self.step.bitrate))
        self._bad_since = (now if self._bad_since is None else self._bad_since) if congested else None
        self._good_since = (now if self._good_since is None else self._good_since) if clean else None
        if self._lossy and clean:
            self.keyframes += 1
        self._lossy = self.loss > DOWN_LOSS or (self._lossy and not clean)
        if now - self._changed_at < DWELL_S:
            return
        held = self._bad_since is not None and (severe or now - self._bad_since >= DOWN_HOLD_S)
        if held and self.index < len(self.steps) - 1:
            failed_probe = now - self._went_up_at < PROBE_S
            self.up_hold_s = min(self.up_hold_s * 2, MAX_UP_HOLD_S) if failed_probe else UP_HOLD_S
            self._went_up_at = -math.inf
            self._move(self._fitting(), now)
        elif self._good_since is not None and now - self._good_since >= self.up_hold_s and self.index > 0:
            self._went_up_at = now
            self._move(self.index - 1, now)

    def _fitting(self) -> int:
        """The step to go down to: the first below this one that fits the receiver's estimate."""
        for index in range(self.index + 1, len(self.steps)):
            if self.remb is None or self.steps[index].bitrate <= DOWN_RATIO * self.remb:
                return index
        return len(self.steps) - 1

    def _move(self, index: int, now: float) -> None:
        self.index = index
        self.changes += 1
        self._changed_at = now
        self._bad_since = self._good_since = None
        self._sent.clear()  # the new encoder's rate is what counts now
