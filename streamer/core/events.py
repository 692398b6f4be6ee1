"""The events a session tells its viewer and its backend, typed, serialised in one place.

Each is a frozen dataclass with a `type` literal; `to_json` gives the JSON that docs/api.md
documents (the data channel, the audio WebSocket and the interrupt answer all send it).

One callback style, everywhere: a component that reports what happens takes, at construction,
one callable per kind of news, receiving one typed value (`emit(event)` for these events,
`on_death(worker)`, `on_poll(quality)`; awaited where the caller must wait for it, as the Ray
pool's `on_back(worker)`), save `on_failure(task_name, exc)` for a background task that died;
JSON is made only where it leaves the process (`to_json`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class SpeakingStarted:
    utterance_id: str
    tick: int
    type: Literal["speaking_started"] = "speaking_started"


@dataclass(frozen=True)
class SpeakingEnded:
    utterance_id: str
    tick: int
    duration_s: float
    type: Literal["speaking_ended"] = "speaking_ended"


@dataclass(frozen=True)
class Interrupted:
    utterance_id: str
    position_s: float
    """How much of the utterance had played when it was dropped."""
    type: Literal["interrupted"] = "interrupted"


@dataclass(frozen=True)
class WelcomeEnded:
    type: Literal["welcome_ended"] = "welcome_ended"


@dataclass(frozen=True)
class Closing:
    reason: str
    """Why the server ends the session (`limit`, `idle`, `draining`, `error`)."""
    type: Literal["closing"] = "closing"


@dataclass(frozen=True)
class Failed:
    """A part of the session died (its media pump, its dispatcher; `closing` follows), or the
    LLM or TTS of a reply failed (`turn_id` set; the session goes on)."""

    error: str
    turn_id: str | None = None
    type: Literal["error"] = "error"


@dataclass(frozen=True)
class ReplyStarted:
    turn_id: str
    type: Literal["reply_started"] = "reply_started"


@dataclass(frozen=True)
class ReplyText:
    """A piece of the answer's text as the LLM wrote it."""

    turn_id: str
    text: str
    type: Literal["reply_text"] = "reply_text"


@dataclass(frozen=True)
class ReplyEnded:
    turn_id: str
    interrupted: bool
    spoken_text: str
    """What of the answer was played (all of it unless interrupted); the history keeps this."""
    type: Literal["reply_ended"] = "reply_ended"


@dataclass(frozen=True)
class TurnTiming:
    """Milliseconds from the turn's start (the chat request, or the end of the user's speech)."""

    turn_id: str
    llm_first_token_ms: float | None
    first_sentence_ms: float | None
    tts_first_audio_ms: float | None
    first_frame_ms: float | None
    vad_end_ms: float | None = None
    asr_ms: float | None = None
    type: Literal["turn_timing"] = "turn_timing"


@dataclass(frozen=True)
class UserSpeechStarted:
    """The viewer's microphone carries speech (it has lasted `turn_min_speech_ms`)."""

    turn_id: str
    type: Literal["user_speech_started"] = "user_speech_started"


@dataclass(frozen=True)
class UserSpeechEnded:
    """The user's turn ended (a pause of `turn_end_silence_ms`, or `turn_max_s`)."""

    turn_id: str
    duration_s: float
    type: Literal["user_speech_ended"] = "user_speech_ended"


@dataclass(frozen=True)
class Transcript:
    """What the user said in a turn (empty when recognition found no words)."""

    turn_id: str
    text: str
    asr_ms: float
    type: Literal["transcript"] = "transcript"


@dataclass(frozen=True)
class ReplyPaused:
    """The user spoke over the answer: it holds, silent, until their words are known."""

    turn_id: str
    type: Literal["reply_paused"] = "reply_paused"


@dataclass(frozen=True)
class ReplyResumed:
    """The speech over the answer held no words: it plays on from where it paused."""

    turn_id: str
    paused_s: float
    type: Literal["reply_resumed"] = "reply_resumed"


Event = (
    SpeakingStarted
    | SpeakingEnded
    | Interrupted
    | WelcomeEnded
    | Closing
    | Failed
    | ReplyStarted
    | ReplyText
    | ReplyEnded
    | TurnTiming
    | UserSpeechStarted
    | UserSpeechEnded
    | Transcript
    | ReplyPaused
    | ReplyResumed
)


def to_json(event: Event, session_id: str | None = None) -> dict[str, Any]:
    """The event's JSON object, `type` first; `session_id` added when given."""
    body = dataclasses.asdict(event)
    out: dict[str, Any] = {"type": body.pop("type"), **body}
    if session_id is not None:
        out["session_id"] = session_id
    return out
