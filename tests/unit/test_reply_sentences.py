"""The sentence cutter, fed a token at a time as the LLM writes."""

from __future__ import annotations

import pytest

from streamer.reply.sentences import SentenceCutter, weight
from tests.fake_llm import tokens


def cut(text: str, **kwargs: int) -> list[str]:
    cutter = SentenceCutter(**kwargs)
    out = [s for token in tokens(text) for s in cutter.push(token)]
    rest = cutter.flush()
    return out + ([rest] if rest else [])


def test_english_sentences_cut_as_they_complete():
    cutter = SentenceCutter()
    assert cutter.push("Hello there") == []
    assert cutter.push(". How") == ["Hello there."]
    assert cutter.push(" are you?") == []  # the next character decides
    assert cutter.push(" Fine") == ["How are you?"]
    assert cutter.flush() == "Fine"


def test_abbreviations_and_decimals_do_not_cut():
    text = "Mr. Smith paid 3.5 dollars for it! Dr. Who said e.g. tea; then he left."
    assert cut(text) == ["Mr. Smith paid 3.5 dollars for it!", "Dr. Who said e.g. tea;", "then he left."]


def test_short_sentences_join_the_next():
    assert cut("Yes. I think so. Ok.") == ["Yes. I think so.", "Ok."]


def test_mandarin_cuts_on_full_width_punctuation_counted_in_characters():
    text = "你好！我是数字人老师。今天天气很好，我们一起去公园散步吧；好的？"
    assert cut(text) == ["你好！我是数字人老师。", "今天天气很好，我们一起去公园散步吧；", "好的？"]
    assert weight("你好") == 4 and weight("hi") == 2


def test_a_long_clause_is_cut_at_a_comma_else_a_space_else_the_bound():
    clause = "and then we walked along the river for a very long time, " + "looking at the boats " * 8
    first, *rest = cut(clause, max_length=80)
    assert first.endswith("time,") and all(len(s) <= 80 for s in rest)
    words = cut("word " * 40, max_length=50)
    assert all(len(s) <= 50 and not s.endswith("wor") for s in words)
    assert "".join(cut("字" * 100, max_length=40)) == "字" * 100
    assert all(weight(s) <= 40 for s in cut("字" * 100, max_length=40))


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_nothing_to_say(text):
    assert cut(text) == []
