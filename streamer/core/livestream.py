"""A live PCM stream into a conversation (the audio WebSocket): s16le chunks in, one utterance out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn, Protocol

from streamer import audio
from streamer.core.clock import Clock
from streamer.core.segmenter import Window
from streamer.core.utterance import Utterance
from streamer.errors import BadInput, Busy, StreamerError, TooLarge
from streamer.pool.costs import low_water_units
from streamer.settings_slices import SpeechSettings
from streamer.units import FPS, MODEL_RATE, OUT_RATE

LOW_WATER_UNITS = 4
"""A playing stream with fewer rendered-or-cut units than this ahead gets a window cut now
(or more: four full-batch calls of the slowest device, `pool.costs.low_water_units`)."""


class StreamOwner(Protocol):
    """What a live stream needs of the conversation it feeds (a `Conversation` is one)."""

    settings: SpeechSettings
    clock: Clock

    @property
    def playing(self) -> Utterance | None: ...

    @property
    def queued_seconds(self) -> float: ...

    def windows_cut(self, windows: list[Window]) -> None: ...

    def stream_ended(self, stream: LiveStream) -> None: ...


class LiveStream:
    """Cuts windows as audio arrives, and early ones when the stream's playout runs low."""

    def __init__(
        self, conversation: StreamOwner, utterance: Utterance, sample_rate: int, devices: Iterable[dict[str, Any]]
    ) -> None:
        """`devices`: the render pool's stats rows, for how far ahead of playout to cut."""
        self._conversation = conversation
        self.utterance = utterance
        self.sample_rate = sample_rate
        self._pcm = audio.PcmStream(sample_rate, (MODEL_RATE, OUT_RATE))
        self.seconds = 0.0
        self.last_audio_at = conversation.clock.now()
        self.ended = False
        self.low_water_units = max(LOW_WATER_UNITS, low_water_units(devices))
        self.dropped = False
        """Interrupted: what it sent is gone and it takes no more audio."""

    @property
    def utterance_id(self) -> str:
        return self.utterance.id

    def push(self, chunk: bytes) -> None:
        if self.ended:
            state = "was interrupted" if self.dropped else "has ended"
            raise BadInput(f"stream {self.utterance.id} {state}: send start to speak again")
        limit = self._conversation.settings.max_audio_seconds
        if self.seconds + len(chunk) / 2 / self.sample_rate > limit:
            self.refuse(TooLarge(f"stream longer than {limit:.0f} s: send end, then start another"))
        queued = self._conversation.settings.max_queued_seconds
        if self.buffered_s() + len(chunk) / 2 / self.sample_rate > queued:
            self.refuse(Busy(f"more than {queued:.0f} s of speech buffered on this session: wait for it to play"))
        out = self._pcm.push(chunk)
        self.seconds += len(out[MODEL_RATE]) / MODEL_RATE
        self.last_audio_at = self._conversation.clock.now()
        if self.utterance.first_audio_at is None and len(out[MODEL_RATE]):
            self.utterance.first_audio_at = self.last_audio_at
        utterance = self.utterance
        self._conversation.windows_cut(utterance.add_audio(audio.to_int16(out[OUT_RATE]), out[MODEL_RATE]))
        if self._conversation.playing is utterance and utterance.known_units - utterance.played < self.low_water_units:
            self._conversation.windows_cut(utterance.cut_available())

    def refuse(self, error: StreamerError) -> NoReturn:
        """A chunk that cannot be taken ends the stream where it stands (never a hole in the
        speech): what arrived before it plays, nothing after it is taken."""
        self.end()
        raise error

    def buffered_s(self) -> float:
        """Speech received but not played on the session, this stream's audio not cut yet included."""
        uncut = max(0.0, self.seconds - self.utterance.known_units / FPS)
        return self._conversation.queued_seconds + uncut

    def end(self) -> float:
        """No more audio; returns the utterance's length in seconds. Ending twice is harmless."""
        if not self.ended:
            self.ended = True
            out = self._pcm.flush()
            utterance = self.utterance
            self._conversation.windows_cut(utterance.add_audio(audio.to_int16(out[OUT_RATE]), out[MODEL_RATE]))
            self._conversation.windows_cut(utterance.end())
            self._conversation.stream_ended(self)
        return (self.utterance.total_units or 0) / FPS

    def drop(self) -> None:
        self.ended = self.dropped = True
