"""One session's conversation history, and what of an interrupted answer was heard."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from streamer.reply.sentences import _CJK

INTERRUPTED_MARK = "…"
"""Ends the heard part of an interrupted answer in the messages, so the model knows it was cut."""


@dataclass
class Turn:
    user: str
    reply: str = ""
    interrupted: bool = False


@dataclass(frozen=True)
class Spoken:
    """A sentence of the answer and where its audio lies in the reply's speech, in seconds."""

    text: str
    start_s: float
    end_s: float


class History:
    """The last `turns` exchanges of one session (each session has its own)."""

    def __init__(self, turns: int) -> None:
        self.turns: deque[Turn] = deque(maxlen=max(1, turns + 1))
        self._keep = turns

    def add(self, user: str) -> Turn:
        """A new question; its answer is filled in when the reply ends."""
        turn = Turn(user)
        self.turns.append(turn)
        return turn

    def messages(self, system_prompt: str) -> list[dict[str, str]]:
        """OpenAI chat messages: the prompt, the kept exchanges, the newest question last.

        An answer that was not heard at all is left out, and questions in a row are joined, so
        roles alternate as strict chat templates want."""
        kept = list(self.turns)[-(self._keep + 1) :]
        out: list[dict[str, str]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
        for turn in kept:
            if out and out[-1]["role"] == "user":
                out[-1]["content"] += "\n" + turn.user
            else:
                out.append({"role": "user", "content": turn.user})
            if turn.reply:
                text = turn.reply + INTERRUPTED_MARK if turn.interrupted else turn.reply
                out.append({"role": "assistant", "content": text})
        return out


def heard_text(spoken: list[Spoken], position_s: float) -> str:
    """The words of `spoken` played by `position_s`: whole sentences, then the share of the one
    cut short (in words, or in characters for CJK text)."""
    parts = []
    for sentence in spoken:
        if position_s >= sentence.end_s:
            parts.append(sentence.text)
            continue
        if position_s > sentence.start_s:
            share = (position_s - sentence.start_s) / max(sentence.end_s - sentence.start_s, 1e-6)
            parts.append(_leading_share(sentence.text, share))
        break
    return _join(p for p in parts if p)


def _leading_share(text: str, share: float) -> str:
    tokens = re.findall(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]|[^\s\u2e80-\u9fff]+", text)
    count = int(len(tokens) * share)
    return _join(tokens[:count])


def _join(parts: object) -> str:
    """Join words or sentences: a space between Latin pieces, none next to CJK characters."""
    out = ""
    for part in parts:  # type: ignore[attr-defined]
        if out and not (_CJK.match(out[-1]) or _CJK.match(part[0])):
            out += " "
        out += part
    return out
