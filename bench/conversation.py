"""Chat turns end to end: the fake OpenAI-compatible LLM, the reply engine, a loopback viewer.

    python bench/conversation.py [--turns 10] [--interrupts 5] [--first-token-ms 300] [--token-ms 30]
    python bench/conversation.py --voice [--turns 5] [--sessions 1] [--bargeins 3]  (bench/conversation_voice.py)

A server (lite renderer, espeak-ng) with `llm_url` pointing at tests/fake_llm.py, which answers
every question with the same three sentences after a fixed first-token delay and token rate.
Per turn: the server's stages from the chat request (`turn_timing`: first token, first
sentence, first TTS audio, first frame played) and, at the viewer, the `speaking_started` event
and the first frame whose mouth moves. `own_ms` is our own part: from the end of the first
sentence's tokens (first_sentence_ms) to the first reply frame at the viewer; `met`: its p95
is within 250 ms. Then `--interrupts` long answers, each interrupted once it has spoken for
0.8 s: from the interrupt request to the fake LLM seeing its stream closed (`llm_hang_up_ms`;
the fake notices at its next token write, so up to one token interval late) and to the
`interrupted` event at the viewer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _checkout  # noqa: F401
from bench import conversation_voice
from bench.common import TEMPLATE, machine, summary, template_dir
from streamer.config import Settings
from streamer.headless.client import Client, figures
from tests.fake_llm import FakeLlm, Script, fake_llm
from tests.support.servers import live_server

TARGET_OWN_MS = 250
ANSWER = "Sure, I can help with that. The shop opens at nine every morning. Is there anything else?"
STAGES = ("llm_first_token_ms", "first_sentence_ms", "tts_first_audio_ms", "first_frame_ms")
IDLE_FRAMES_BETWEEN = 13


async def _turn(client: Client, index: int) -> dict[str, Any]:
    turn, sent = await client.chat(f"Question number {index}: when do you open?")
    timing = await client.wait_event("turn_timing", turn, timeout=30)
    await client.wait_event("reply_ended", turn, timeout=60)
    ended = time.monotonic()
    started_at = next(
        t for t, e in client.received.events if e.get("type") == "speaking_started" and t >= sent
    )  # the reply's utterance is the only one speaking after `sent`
    await client.wait_frames(IDLE_FRAMES_BETWEEN)
    seen = figures(client, sent, ended)
    viewer_ms = round((started_at - sent) * 1000, 1)
    first_sentence = timing["first_sentence_ms"]
    motion_ms = seen.get("speak_to_first_speech_frame_ms")
    if motion_ms is not None and motion_ms < timing["first_frame_ms"]:
        motion_ms = None  # motion before the reply played: the idle reference frame was off
    return {
        **{k: timing[k] for k in STAGES},
        "viewer_first_frame_ms": viewer_ms,
        "viewer_first_moving_frame_ms": motion_ms,
        "own_ms": round(viewer_ms - first_sentence, 1),
        "own_to_moving_frame_ms": round(motion_ms - first_sentence, 1) if motion_ms is not None else None,
        "av_offset_ms": seen.get("av_offset_ms"),
    }


async def _interrupt(client: Client, llm: FakeLlm) -> dict[str, Any]:
    hung_up = llm.hung_up
    turn, sent = await client.chat("Tell me a long story.")
    await client.wait_event("turn_timing", turn, timeout=30)  # sent with the reply's first frame
    started = next(e for t, e in client.received.events if e.get("type") == "speaking_started" and t >= sent)
    await client.wait_frames(20)
    at = time.monotonic()
    await client.interrupt()
    await llm.wait_for(hung_up=hung_up + 1)
    await client.wait_event("interrupted", started["utterance_id"])
    seen = next(t for t, e in client.received.events if e.get("type") == "interrupted" and t >= at)
    await client.wait_event("reply_ended", turn)
    await client.wait_frames(IDLE_FRAMES_BETWEEN)
    return {
        "llm_hang_up_ms": round((llm.hung_up_at[-1] - at) * 1000, 1),
        "viewer_interrupted_ms": round((seen - at) * 1000, 1),
    }


async def _session(url: str, turns: int, llm: FakeLlm, interrupts: int, long: Script) -> dict[str, Any]:
    client = Client(url)
    try:
        await client.connect(TEMPLATE)
        await client.wait_event("welcome_ended", timeout=60)
        await client.wait_frames(IDLE_FRAMES_BETWEEN)
        rows = [await _turn(client, i) for i in range(turns)]
        llm.scripts[:] = [long]
        cuts = [await _interrupt(client, llm) for _ in range(interrupts)]
        state = await client.state()
    finally:
        await client.close()
    keys = [*STAGES, "viewer_first_frame_ms", "viewer_first_moving_frame_ms", "own_ms", "own_to_moving_frame_ms"]
    return {
        "renderer": state["renderer"],
        "stalls": state["stalls"],
        **{k: summary([r[k] for r in rows if r[k] is not None]) for k in keys},
        "llm_hang_up_ms": summary([c["llm_hang_up_ms"] for c in cuts]),
        "viewer_interrupted_ms": summary([c["viewer_interrupted_ms"] for c in cuts]),
        "per_turn": rows,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if "--voice" in argv:  # spoken turns: the microphone, turns, recognition, barge-in
        voice = argparse.ArgumentParser(description=conversation_voice.__doc__)
        voice.add_argument("--voice", action="store_true")
        conversation_voice.add_arguments(voice)
        return conversation_voice.run(voice.parse_args(argv))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--first-token-ms", type=float, default=300.0)
    parser.add_argument("--token-ms", type=float, default=30.0)
    parser.add_argument("--interrupts", type=int, default=5)
    args = parser.parse_args(argv)
    script = Script(ANSWER, first_token_s=args.first_token_ms / 1000, token_s=args.token_ms / 1000)
    with tempfile.TemporaryDirectory(prefix="bench-conversation-") as tmp, fake_llm(script) as llm:
        work = Path(tmp)
        settings = Settings(
            templates_dir=template_dir(work / "templates"),
            cache_dir=work / "cache",
            renderer="lite",
            devices=("cpu",),
            tts="espeak",
            llm_url=llm.url,
            llm_model="fake",
        )
        with live_server(settings) as live:
            long = Script(" ".join([ANSWER] * 20), token_s=args.token_ms / 1000)
            result = asyncio.run(_session(live.url, args.turns, llm, args.interrupts, long))
    p95 = result["own_ms"]["p95"]
    return {
        "bench": "conversation",
        "machine": machine(),
        "turns": args.turns,
        "fake_llm_first_token_delay_ms": args.first_token_ms,
        "fake_llm_token_interval_ms": args.token_ms,
        "answer": ANSWER,
        **result,
        "target_own_ms": TARGET_OWN_MS,
        "met_by": "p95 of own_ms: end of the first sentence's tokens to the first reply frame at the viewer",
        "met": p95 is not None and p95 <= TARGET_OWN_MS,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
