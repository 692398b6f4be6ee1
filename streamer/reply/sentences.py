"""Cut a streamed answer into sentences as its tokens arrive, for speech one sentence at a time.

A sentence ends at . ! ? ; (followed by a space) or at 。！？； (at once). A cut needs a
minimum length, so "Mr." or "3.5" never end a sentence; a long clause with no end is cut at
its last comma, else at its last space, else at the bound. Lengths are in characters with a
CJK character counting two (it is a word of its own), so Mandarin cuts as often as English.
"""

from __future__ import annotations

import re

ENDS = ".!?;"
CJK_ENDS = "。！？；"
CLOSERS = "\"')]}”’」』）"
COMMAS = ",:，、："
ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "vs", "etc", "e.g", "i.e", "prof", "jr", "sr", "no", "mt"})
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def weight(text: str) -> int:
    """Length of `text`, a CJK character counting two."""
    return len(text) + len(_CJK.findall(text))


class SentenceCutter:
    def __init__(self, min_length: int = 8, max_length: int = 160) -> None:
        self.min_length = min_length
        self.max_length = max_length
        self._buffer = ""

    def push(self, delta: str) -> list[str]:
        """Add a piece of the answer; returns the sentences it completed, in order."""
        self._buffer += delta
        out = []
        while (cut := self._next_cut()) is not None:
            sentence, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
            if sentence:
                out.append(sentence)
        return out

    def flush(self) -> str | None:
        """The rest of the answer (its end came without punctuation)."""
        rest, self._buffer = self._buffer.strip(), ""
        return rest or None

    def _next_cut(self) -> int | None:
        text = self._buffer
        for i, ch in enumerate(text):
            if ch in CJK_ENDS or ch == "\n":
                end = self._after_closers(i + 1)
            elif ch in ENDS:
                end = self._after_closers(i + 1)
                if end >= len(text):
                    break  # the next character decides (a space ends it, a digit does not)
                if not text[end].isspace() or self._abbreviation(i):
                    continue
            else:
                continue
            if weight(text[:end].strip()) >= self.min_length:
                return end
        return self._long_clause_cut()

    def _after_closers(self, i: int) -> int:
        while i < len(self._buffer) and self._buffer[i] in CLOSERS:
            i += 1
        return i

    def _abbreviation(self, dot: int) -> bool:
        if self._buffer[dot] != ".":
            return False
        word = self._buffer[:dot].rsplit(None, 1)[-1] if self._buffer[:dot].strip() else ""
        return len(word) == 1 or word.lower() in ABBREVIATIONS

    def _long_clause_cut(self) -> int | None:
        """Where to cut a clause longer than `max_length` that has not ended; None: not yet."""
        text = self._buffer
        if weight(text) < self.max_length:
            return None
        bound = len(text)
        while weight(text[:bound]) > self.max_length:
            bound -= 1
        head = text[:bound]
        comma = max(head.rfind(c) for c in COMMAS)
        if comma >= 0 and weight(head[: comma + 1].strip()) >= self.min_length:
            return comma + 1
        space = head.rfind(" ")
        if space > 0 and weight(head[:space].strip()) >= self.min_length:
            return space
        return bound
