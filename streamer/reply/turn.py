"""One reply's state: its tasks, the sentences spoken and where their audio lies, its timing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from streamer.core.events import TurnTiming
from streamer.core.livestream import LiveStream
from streamer.reply.history import Spoken, Turn, heard_text
from streamer.reply.llm import ChatStream


@dataclass
class Reply:
    turn_id: str
    turn: Turn
    started: float
    """On the conversation's clock: when the chat request (or the end of speech) came."""
    earlier: dict[str, float] = field(default_factory=dict)
    """Stages before the text (the voice path's `vad_end_ms`, `asr_ms`)."""
    chat: ChatStream | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    sentences: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    stream: LiveStream | None = None
    audio_s: float = 0.0
    """Seconds of the reply's audio pushed so far (the reply's own time line)."""
    spoken: list[Spoken] = field(default_factory=list)
    utterances: dict[str, float] = field(default_factory=dict)
    """Utterance id → where it starts on the reply's time line (a long reply may need several)."""
    playing: set[str] = field(default_factory=set)
    """Utterances opened and not yet ended or interrupted."""
    heard_s: float = 0.0
    cut_s: float | None = None
    speech_done: bool = False
    halted: bool = False
    marks: dict[str, float] = field(default_factory=dict)
    timing_sent: bool = False

    def mark(self, stage: str, now: float) -> None:
        """Note when a stage first happened (first token, first sentence, first audio, first frame)."""
        self.marks.setdefault(stage, round((now - self.started) * 1000, 1))

    def timing(self) -> TurnTiming:
        m = self.marks
        return TurnTiming(
            self.turn_id,
            m.get("llm_first_token_ms"),
            m.get("first_sentence_ms"),
            m.get("tts_first_audio_ms"),
            m.get("first_frame_ms"),
            self.earlier.get("vad_end_ms"),
            self.earlier.get("asr_ms"),
        )

    def heard(self) -> str:
        """The words played: up to the interrupt's position, else all that ended playing."""
        position = self.heard_s if self.cut_s is None else self.cut_s
        return heard_text(self.spoken, position)
