"""Spoken turns, end to end: end of the user's speech → first reply frame, by stage; barge-in.

    python bench/conversation_voice.py [--turns 10] [--sessions 1] [--bargeins 5]

A server on a free loopback port (lite renderer, default ASR: pocketsphinx); each headless
viewer speaks espeak-ng questions into its microphone track in real time. The reply engine is
a stand-in that answers at once with a canned espeak-ng line (no LLM, no TTS: add their
latency from bench/conversation.py), so what is measured is ours: turn detection, recognition,
and the answer's first frame. Per turn, on the viewer's clock: end of voice (the question's
last sample above the noise floor left the microphone) → `user_speech_ended` arrives
(`vad_end_ms`, mostly `turn_end_silence_ms`) → `transcript` arrives (`asr_ms`) → the answer's
`speaking_started` arrives (`reply_ms`) and its first audible audio (`first_reply_audio_ms`,
the total). Barge-in: a question spoken over a playing answer: voice onset → `reply_paused`
(`pause_ms`) and → the answer's audio falls silent at the viewer (`silence_ms`). With
`--sessions N` the viewers talk at once; each one's received fps is reported.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.common import SENTENCES, TEMPLATE, machine, speech_wav, summary, template_dir  # noqa: E402
from streamer.audio import decode_file, to_int16  # noqa: E402
from streamer.client import Client, figures  # noqa: E402
from streamer.client_mic import RATE, MicTrack  # noqa: E402
from streamer.config import Settings  # noqa: E402
from streamer.conversation import Conversation  # noqa: E402
from streamer.server.keys import SESSIONS  # noqa: E402
from streamer.testing import LiveServer, live_server  # noqa: E402
from streamer.units import MODEL_RATE  # noqa: E402

VOICE_FLOOR = 500
"""int16 level above which a sample is voice (espeak-ng's silence is exact zeros)."""
QUIET_RMS = 200.0


class CannedReply:
    """Stands in for the reply engine: answers every turn at once with the same line."""

    def __init__(self, conversation: Conversation, answer16k: np.ndarray, answer48k: np.ndarray) -> None:
        self._conversation = conversation
        self._answer = (answer16k, answer48k)
        self.replying = False

    async def start_turn(self, text: str, *, timing: dict[str, float] | None = None) -> str:
        self.interrupt()
        self.replying = True
        return self._conversation.speak(*self._answer).id

    # What the session asks of its reply engine besides `ReplyControl`:
    def observe(self, event: object) -> None:
        pass

    def interrupt_all(self) -> list:
        return self._conversation.interrupt()

    async def close(self) -> None:
        pass

    def interrupt(self) -> None:
        if self.replying:
            self.replying = False
            self._conversation.interrupt()


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


async def viewer(live: LiveServer, answer: tuple[np.ndarray, np.ndarray]) -> tuple[Client, MicTrack]:
    mic = MicTrack()
    client = Client(live.url)
    await client.connect(TEMPLATE, mic=mic)
    await client.wait_event("welcome_ended", timeout=60)
    session = live.app[SESSIONS].sessions[client.session_id]
    reply = CannedReply(session.conversation, *answer)
    live.loop.call_soon_threadsafe(setattr, session, "replier", reply)
    return client, mic


async def one_turn(client: Client, mic: MicTrack, question: np.ndarray) -> dict[str, float]:
    sent_end = await mic.say(question)
    voice_end = sent_end - trailing_silence_s(question)
    ended_at, _ = await event_after(client, "user_speech_ended", voice_end)
    heard_at, transcript = await event_after(client, "transcript", voice_end)
    started_at, started = await event_after(client, "speaking_started", voice_end)
    await client.wait_event("speaking_ended", started["utterance_id"], timeout=30)
    audible = first_loud_after(client, started_at - 0.2)
    return {
        "vad_end_ms": (ended_at - voice_end) * 1000,
        "asr_ms": float(transcript["asr_ms"]),
        "transcript_ms": (heard_at - voice_end) * 1000,
        "reply_ms": (started_at - heard_at) * 1000,
        "first_reply_frame_ms": (started_at - voice_end) * 1000,
        "first_reply_audio_ms": ((audible or started_at) - voice_end) * 1000,
    }


async def one_bargein(client: Client, mic: MicTrack, question: np.ndarray, long_answer: bytes) -> dict[str, float]:
    reply, _ = await client.speak(long_answer, "audio/wav")
    await client.wait_event("speaking_started", reply["utterance_id"])
    await client.wait_frames(25)
    said = time.monotonic()
    done = mic.say(question)
    onset = said + leading_silence_s(question)
    paused_at, _ = await event_after(client, "reply_paused", said)
    quiet_at = first_quiet_after(client, onset)
    await done
    await event_after(client, "transcript", said)
    await client.interrupt()
    return {"pause_ms": (paused_at - onset) * 1000, "silence_ms": ((quiet_at or paused_at) - onset) * 1000}


async def talk(live: LiveServer, work: Path, turns: int, bargeins: int, answer: Any) -> dict[str, Any]:
    client, mic = await viewer(live, answer)
    questions = [
        to_int16(decode_file(speech_wav(s, work / f"q{i}.wav"), RATE)) for i, s in enumerate(SENTENCES[:turns])
    ]
    long_answer = speech_wav(" ".join(SENTENCES), work / "long.wav").read_bytes()
    try:
        rows = []
        for q in questions:
            try:
                rows.append(await one_turn(client, mic, q))
            except TimeoutError:  # no words recognised: no reply to time
                rows.append({})
        barge = [await one_bargein(client, mic, questions[i % len(questions)], long_answer) for i in range(bargeins)]
        fps = figures(client, None, None).get("fps")
        return {"turns": rows, "bargeins": barge, "fps": fps}
    finally:
        await client.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        line = speech_wav("Sure. Here is what I think.", work / "answer.wav")
        answer = (decode_file(line, MODEL_RATE), decode_file(line, 48000))
        settings = Settings(
            templates_dir=template_dir(work / "templates"),
            cache_dir=work / "cache",
            renderer="lite",
            devices=("cpu",),
            max_sessions=max(4, args.sessions),
        )
        with live_server(settings) as live:
            results = await asyncio.gather(
                *(talk(live, work, args.turns, args.bargeins, answer) for _ in range(args.sessions))
            )
    rows = [row for r in results for row in r["turns"] if row]
    unheard = sum(1 for r in results for row in r["turns"] if not row)
    barge = [row for r in results for row in r["bargeins"]]
    stages = ("vad_end_ms", "asr_ms", "transcript_ms", "reply_ms", "first_reply_frame_ms", "first_reply_audio_ms")
    return {
        "bench": "conversation_voice",
        "machine": machine(),
        "sessions": args.sessions,
        "turn_end_silence_ms": settings.turn_end_silence_ms,
        "asr": settings.asr,
        "turns_without_words": unheard,
        "end_of_speech_to_reply": {k: summary([r[k] for r in rows]) for k in stages},
        "bargein": {k: summary([b[k] for b in barge]) for k in ("pause_ms", "silence_ms")},
        "fps_per_session": [r["fps"] for r in results],
        "note": "no LLM or TTS: the reply is a canned line spoken at once (add bench/conversation.py's stages)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--bargeins", type=int, default=3)
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
