"""Attacks on the upload decoders: an input that crashes one, a decoder killed from outside, an
input that never finishes, a decoder that answers with something other than arrays."""

from __future__ import annotations

import asyncio
import json
import signal

import psutil
import pytest

from streamer.errors import BadInput, StreamerError
from streamer.server.decoding import DecoderCrashed, Decoders, DecodeTimeout, _result
from tests.decoder_faults import CRASH, HANG, decode_or_crash

PCM = bytes(3200)  # 0.1 s of 16 kHz silence
PCM_TYPE = "audio/pcm;rate=16000"


async def test_a_crashing_upload_fails_alone_while_other_uploads_decode():
    decoders = Decoders(processes=2, speech_fn=decode_or_crash)
    try:
        jobs = [decoders.speech(CRASH, PCM_TYPE, 5.0)] + [decoders.speech(PCM, PCM_TYPE, 5.0) for _ in range(6)]
        crashed, *normal = await asyncio.gather(*jobs, return_exceptions=True)
        assert isinstance(crashed, DecoderCrashed) and "crashed" in str(crashed)
        assert all(isinstance(r, tuple) and len(r[0]) == 4800 for r in normal), normal
        assert decoders.crashes == 1
    finally:
        decoders.close()


async def test_a_decoder_killed_between_uploads_costs_no_upload():
    decoders = Decoders(processes=2)
    try:
        await decoders.warm()
        victims = [psutil.Process(pid) for pid in decoders.pids()]
        assert len(victims) == 2
        for victim in victims:
            victim.send_signal(signal.SIGKILL)  # what the OOM killer does
        psutil.wait_procs(victims, timeout=30)
        results = await asyncio.gather(*(decoders.speech(PCM, PCM_TYPE, 5.0) for _ in range(4)))
        assert [len(a48) for a48, _ in results] == [4800] * 4
        assert decoders.crashes == 0 and decoders.replaced == 2
    finally:
        decoders.close()


async def test_an_upload_that_never_finishes_is_stopped_and_its_decoder_killed():
    decoders = Decoders(processes=1, timeout_s=3.0, speech_fn=decode_or_crash)
    try:
        await decoders.warm()
        [stalled] = decoders.pids()
        with pytest.raises(DecodeTimeout, match="longer than 3 s"):
            await decoders.speech(HANG, PCM_TYPE, 5.0)
        assert not psutil.pid_exists(stalled) or psutil.Process(stalled).status() == psutil.STATUS_ZOMBIE
        audio48k, _ = await decoders.speech(PCM, PCM_TYPE, 5.0)  # a fresh decoder took over
        assert len(audio48k) == 4800
    finally:
        decoders.close()


def test_a_reply_is_json_and_plain_arrays_never_objects():
    """A decoder taken over by a hostile input cannot hand the server a pickle or an object array."""
    header = json.dumps({"arrays": [{"dtype": "object", "shape": [1]}], "tuple": False}).encode()
    with pytest.raises(StreamerError, match="unknown type"):
        _result([header, b"\x80\x04K\x01."])
    with pytest.raises(BadInput, match=r"^no$"):
        _result([json.dumps({"error": "BadInput", "message": "no"}).encode()])
    with pytest.raises(StreamerError) as raised:  # errors cross by the name of one of ours only
        _result([json.dumps({"error": "system", "message": "x"}).encode()])
    assert type(raised.value) is StreamerError
