"""Attack: an upload in a channel layout the decoder mishandles (an 8-channel WAV once made
PyAV read a plane that was not there and segfault). Every container, codec and layout this
PyAV can write decodes to the right mono level, in a decoder process (so a crash would show
as a failed case here, not as a dead test run); more than 8 channels is a 400 that says so."""

from __future__ import annotations

import numpy as np
import pytest

from bench import audio_layouts
from streamer.audio import MAX_CHANNELS
from streamer.errors import BadInput
from streamer.server.decoding import DecoderCrashed, Decoders

EXPECTED_RMS = audio_layouts.LEVEL / np.sqrt(2)


async def test_every_writable_layout_decodes_to_the_mean_of_its_channels():
    cases = audio_layouts.cases()
    assert {c.channels for c in cases} >= {1, 2, 6, 8, 16} and len(cases) > 40
    decoders = Decoders(processes=2)
    wrong: list[str] = []
    try:
        for case in cases:
            try:
                audio48k, audio16k = await decoders.speech(case.data, case.content_type, 10.0)
            except DecoderCrashed:
                wrong.append(f"{case.name}: crashed the decoder")
                continue
            except BadInput as exc:
                if case.channels > MAX_CHANNELS and f"{case.channels} channels" in str(exc):
                    continue  # refused, saying why
                wrong.append(f"{case.name}: {exc}")
                continue
            if case.channels > MAX_CHANNELS:
                wrong.append(f"{case.name}: {case.channels} channels were not refused")
                continue
            middle = audio48k[len(audio48k) // 4 : -len(audio48k) // 4]
            rms = float(np.sqrt(np.mean(middle**2)))
            if not 0.6 * EXPECTED_RMS < rms < 1.25 * EXPECTED_RMS or abs(len(audio16k) * 3 - len(audio48k)) > 3:
                wrong.append(f"{case.name}: rms {rms:.3f}, expected {EXPECTED_RMS:.3f}")
        assert decoders.crashes == 0
    finally:
        decoders.close()
    assert not wrong, "\n".join(wrong)


def test_the_reviewed_repro_is_a_small_eight_channel_wav():
    data = audio_layouts.unnamed_wav(8, seconds=0.025)
    assert 6000 < len(data) < 7000  # the 6.5 KB upload of the review


@pytest.mark.parametrize("channels", [9, 16])
def test_more_channels_than_supported_are_refused_with_a_sentence(channels):
    from streamer import audio

    with pytest.raises(BadInput, match=f"{channels} channels; at most 8"):
        audio.decode(audio_layouts.unnamed_wav(channels), "audio/wav", 16000, 10.0)
