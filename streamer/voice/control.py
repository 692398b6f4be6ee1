"""What listening needs of the reply engine (streamer/reply), as a protocol."""

from __future__ import annotations

from typing import Protocol


class ReplyControl(Protocol):
    """A session's reply engine: the user's words start a turn; speech over the answer interrupts it."""

    @property
    def replying(self) -> bool:
        """From `start_turn` until the reply has ended."""
        ...

    async def start_turn(self, text: str, *, timing: dict[str, float] | None = None) -> str:
        """Answer `text` (interrupting any reply first); returns the turn id. `timing` carries
        `vad_end_ms` and `asr_ms`, which the turn's `turn_timing` event reports."""
        ...

    def interrupt(self) -> None:
        """Silence within a frame, the LLM stream closed, history trimmed to what was heard."""
        ...
