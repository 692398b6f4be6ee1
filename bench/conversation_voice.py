"""Spoken turns, end to end: end of the user's speech → first reply frame, by stage; barge-in.

    python bench/conversation.py --voice [--turns 5] [--sessions 1] [--bargeins 3] [--first-token-ms 300]

The server runs in a process of its own (`run.py serve`: lite renderer, default ASR
pocketsphinx, espeak-ng TTS, `llm_url` at tests/fake_llm.py, whose first token comes after
`--first-token-ms`); headless viewers in this process speak espeak-ng questions into their
microphone tracks in real time. Per turn, on the viewer's clock from the end of voice (the
question's last sample above the noise floor left the microphone): `user_speech_ended` arrives
(`vad_end`, mostly `turn_end_silence_ms`), `transcript` arrives, the answer's
`speaking_started` arrives (`first_reply_frame_ms`, the total) and its first audible audio;
the server's stages from the turn's `turn_timing` (`vad_end_ms`, `asr_ms`, then from the
transcript `llm_first_token_ms`, `first_sentence_ms`, `tts_first_audio_ms`, `first_frame_ms`);
`own_ms` is the total less the LLM's part (first_sentence_ms). Barge-in: a question spoken
over a playing answer: voice onset → `reply_paused` (`pause_ms`) and → the answer's audio
falls silent at the viewer (`silence_ms`). With `--sessions N` the viewers talk at once; each
one's received fps and the server process's CPU (its threads and child processes) are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _checkout import ROOT
from bench.common import SENTENCES, TEMPLATE, machine, speech_wav, summary, template_dir
from bench.cpu import cpu_split
from streamer.audio import decode_file, to_int16
from streamer.config import Settings
from streamer.headless.client import Client, figures
from streamer.headless.mic import RATE, MicTrack
from tests.fake_llm import Script, fake_llm
from tests.served import served

VOICE_FLOOR = 500
"""int16 level above which a sample is voice (espeak-ng's silence is exact zeros)."""
QUIET_RMS = 200.0
ANSWER = "Sure, here is what I think. The shop opens at nine."
SERVER_STAGES = (
    "vad_end_ms",
    "asr_ms",
    "llm_first_token_ms",
    "first_sentence_ms",
    "tts_first_audio_ms",
    "first_frame_ms",
)
VIEWER_STAGES = ("vad_end", "transcript", "first_reply_frame_ms", "first_reply_audio_ms", "own_ms")


def trailing_silence_s(samples: np.ndarray) -> float:
    loud = np.flatnonzero(np.abs(samples) > VOICE_FLOOR)
    return (len(samples) - (loud[-1] + 1 if loud.size else 0)) / RATE


def leading_silence_s(samples: np.ndarray) -> float:
    loud = np.flatnonzero(np.abs(samples) > VOICE_FLOOR)
    return (loud[0] if loud.size else 0) / RATE


def first_loud_after(client: Client, t0: float) -> float | None:
    r = client.received
    for at, chunk in zip(r.audio_times, r.audio, strict=True):
        if at > t0 and np.sqrt(np.mean(chunk.astype(np.float64) ** 2)) > QUIET_RMS * 2:
            return at
    return None


def first_quiet_after(client: Client, t0: float, chunks: int = 5) -> float | None:
    """The start of the first run of `chunks` quiet audio frames (100 ms: not a gap between words)."""
    r = client.received
    run: list[float] = []
    for at, chunk in zip(r.audio_times, r.audio, strict=True):
        quiet = at > t0 and np.sqrt(np.mean(chunk.astype(np.float64) ** 2)) < QUIET_RMS
        run = [*run, at] if quiet else []
        if len(run) >= chunks:
            return run[0]
    return None


async def event_after(client: Client, kind: str, t0: float, timeout: float = 30.0) -> tuple[float, dict[str, Any]]:
    """The first `kind` event that arrived after t0 (its arrival time, and the event)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for at, event in client.received.events:
            if at > t0 and event.get("type") == kind:
                return at, event
        await client.wait_frames(1)
    raise TimeoutError(f"no {kind} after the question")


async def one_turn(client: Client, mic: MicTrack, question: np.ndarray) -> dict[str, float]:
    sent_end = await mic.say(question)
    voice_end = sent_end - trailing_silence_s(question)
    ended_at, _ = await event_after(client, "user_speech_ended", voice_end)
    heard_at, _ = await event_after(client, "transcript", voice_end)
    started_at, _ = await event_after(client, "speaking_started", voice_end)
    _, timing = await event_after(client, "turn_timing", voice_end)
    await client.wait_event("reply_ended", timing["turn_id"], timeout=60)
    audible = first_loud_after(client, started_at - 0.2)
    total = (started_at - voice_end) * 1000
    return {
        **{k: float(timing[k]) for k in SERVER_STAGES if timing.get(k) is not None},
        "vad_end": (ended_at - voice_end) * 1000,
        "transcript": (heard_at - voice_end) * 1000,
        "first_reply_frame_ms": total,
        "first_reply_audio_ms": ((audible or started_at) - voice_end) * 1000,
        "own_ms": total - float(timing["first_sentence_ms"]),
    }


async def one_bargein(client: Client, mic: MicTrack, question: np.ndarray, long_answer: bytes) -> dict[str, float]:
    reply, _ = await client.speak(long_answer, "audio/wav")
    await client.wait_event("speaking_started", reply["utterance_id"])
    await client.wait_frames(25)
    said = time.monotonic()
    done = mic.say(question)
    onset = said + leading_silence_s(question)
    paused_at, _ = await event_after(client, "reply_paused", said)
    await done
    quiet_at = first_quiet_after(client, onset)  # after the question: the quiet audio has come in
    await event_after(client, "transcript", said)
    await client.interrupt()
    return {"pause_ms": (paused_at - onset) * 1000, "silence_ms": ((quiet_at or paused_at) - onset) * 1000}


async def talk(url: str, work: Path, turns: int, bargeins: int) -> dict[str, Any]:
    mic = MicTrack()
    client = Client(url, audio_hold=1)
    await client.connect(TEMPLATE, mic=mic)
    await client.wait_event("welcome_ended", timeout=60)
    questions = [
        to_int16(decode_file(speech_wav(s, work / f"q{i}.wav"), RATE)) for i, s in enumerate(SENTENCES[:turns])
    ]
    long_answer = speech_wav(" ".join(SENTENCES), work / "long.wav").read_bytes()
    try:
        started = time.monotonic()
        rows = []
        for q in questions:
            try:
                rows.append(await one_turn(client, mic, q))
            except TimeoutError:  # no words recognised: no reply to time
                rows.append({})
        barge = [await one_bargein(client, mic, questions[i % len(questions)], long_answer) for i in range(bargeins)]
        fps = figures(client, started, time.monotonic()).get("fps")
        return {"turns": rows, "bargeins": barge, "fps": fps}
    finally:
        await client.close()


async def measure(url: str, pid: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    before, t0 = cpu_split(pid), time.monotonic()
    results = await asyncio.gather(*(talk(url, work, args.turns, args.bargeins) for _ in range(args.sessions)))
    after, wall = cpu_split(pid), time.monotonic() - t0
    cores = {k: round((after[k] - before[k]) / wall, 2) for k in after}
    return {"results": results, "server_cpu_cores": {**cores, "total": round(sum(cores.values()), 2)}}


def serve_env(work: Path, llm_url: str, sessions: int) -> dict[str, str]:
    return {
        "STREAMER_TEMPLATES_DIR": str(template_dir(work / "templates")),
        "STREAMER_CACHE_DIR": str(work / "cache"),
        "STREAMER_RENDERER": "lite",
        "STREAMER_TTS": "espeak",
        "STREAMER_LLM_URL": llm_url,
        "STREAMER_LLM_MODEL": "fake",
        "STREAMER_MAX_SESSIONS": str(max(4, sessions)),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    script = Script(ANSWER, first_token_s=args.first_token_ms / 1000, token_s=args.token_ms / 1000)
    with tempfile.TemporaryDirectory() as tmp, fake_llm(script) as llm:
        work = Path(tmp)
        with served(env=serve_env(work, llm.url, args.sessions)) as server:
            out = asyncio.run(measure(server.url, server.process.pid, work, args))
    results = out["results"]
    rows = [row for r in results for row in r["turns"] if row]
    barge = [row for r in results for row in r["bargeins"]]
    settings = Settings()
    return {
        "bench": "conversation_voice",
        "machine": machine(),
        "sessions": args.sessions,
        "turn_end_silence_ms": settings.turn_end_silence_ms,
        "barge_in_min_speech_ms": settings.barge_in_min_speech_ms,
        "asr": settings.asr,
        "fake_llm_first_token_delay_ms": args.first_token_ms,
        "turns_without_words": sum(1 for r in results for row in r["turns"] if not row),
        "server_stages": {k: summary([r[k] for r in rows if k in r]) for k in SERVER_STAGES},
        "end_of_speech_to_reply": {k: summary([r[k] for r in rows]) for k in VIEWER_STAGES},
        "bargein": {k: summary([b[k] for b in barge]) for k in ("pause_ms", "silence_ms")},
        "fps_per_session": [r["fps"] for r in results],
        "server_cpu_cores": out["server_cpu_cores"],
        "note": "server stages after asr_ms count from the transcript; own_ms: total less first_sentence_ms",
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--bargeins", type=int, default=3)
    parser.add_argument("--first-token-ms", type=float, default=300.0)
    parser.add_argument("--token-ms", type=float, default=30.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
