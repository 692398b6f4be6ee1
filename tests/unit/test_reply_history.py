"""History per session: what the LLM is sent, and what of an interrupted answer was heard."""

from __future__ import annotations

from streamer.reply.history import History, Spoken, heard_text

SPOKEN = [Spoken("Hello there.", 0.0, 1.0), Spoken("The quick brown fox jumps.", 1.0, 3.0), Spoken("Bye.", 3.0, 4.0)]


def test_heard_text_stops_at_the_played_position():
    assert heard_text(SPOKEN, 0.0) == ""
    assert heard_text(SPOKEN, 1.0) == "Hello there."
    assert heard_text(SPOKEN, 2.0) == "Hello there. The quick"
    assert heard_text(SPOKEN, 10.0) == "Hello there. The quick brown fox jumps. Bye."


def test_heard_mandarin_counts_characters():
    spoken = [Spoken("你好！我是数字人。", 0.0, 1.0), Spoken("今天天气很好。", 1.0, 2.0)]
    assert heard_text(spoken, 1.5) == "你好！我是数字人。今天天"


def test_messages_keep_the_last_turns_and_mark_the_interrupted():
    history = History(2)
    for i in range(4):
        turn = history.add(f"question {i}")
        turn.reply = f"answer {i}"
    turn = history.add("question 4")
    messages = history.messages("be brief")
    assert messages[0] == {"role": "system", "content": "be brief"}
    assert [m["content"] for m in messages[1:]] == ["question 2", "answer 2", "question 3", "answer 3", "question 4"]
    turn.reply, turn.interrupted = "The quick", True
    history.add("go on")
    assert history.messages("")[-2:] == [
        {"role": "assistant", "content": "The quick…"},
        {"role": "user", "content": "go on"},
    ]


def test_unanswered_questions_join_the_next_so_roles_alternate():
    history = History(5)
    history.add("hello?")  # the LLM failed: no answer
    history.add("anyone?")
    assert history.messages("") == [{"role": "user", "content": "hello?\nanyone?"}]


def test_two_sessions_never_share_a_history():
    a, b = History(5), History(5)
    a.add("from a").reply = "to a"
    b.add("from b")
    assert b.messages("") == [{"role": "user", "content": "from b"}]
    assert a.messages("") == [{"role": "user", "content": "from a"}, {"role": "assistant", "content": "to a"}]
