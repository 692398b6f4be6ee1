"""MuseTalk v1.5 audio features: whisper hidden states at 50 Hz, windowed per 25 fps frame.

The audio is cut into 30 s segments, each log-mel'd and encoded alone (as the official code
does); the 5 hidden states are stacked per 50 Hz row, the rows concatenated and trimmed to
floor(seconds × 50). Frame f takes the 10 rows starting 4 rows before its own (2 frames of
context each side, zeros past either end) → [10 × 5, 384], time-major.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from streamer.units import MODEL_RATE

SEGMENT_SAMPLES = 30 * MODEL_RATE
ROWS_PER_SECOND = 50
SAMPLES_PER_ROW = MODEL_RATE // ROWS_PER_SECOND  # 320
ROWS_PER_FRAME = 10
PAD_FRONT = 4


def frame_windows(hidden: torch.Tensor, first: int, count: int) -> torch.Tensor:
    """[count, 10 × L, D] audio tokens of frames first … first+count-1 from [rows, L, D] rows."""
    rows, layers, dim = hidden.shape
    frames = torch.arange(first, first + count, device=hidden.device)
    index = 2 * frames[:, None] + torch.arange(ROWS_PER_FRAME, device=hidden.device) - PAD_FRONT
    valid = (index >= 0) & (index < rows)
    if rows == 0:
        return hidden.new_zeros(count, ROWS_PER_FRAME * layers, dim)
    picked = hidden[index.clamp(0, rows - 1)] * valid[:, :, None, None].to(hidden.dtype)
    return picked.reshape(count, ROWS_PER_FRAME * layers, dim)


class WhisperFeatures:
    """Whisper encoder hidden states of an utterance, with a small cache of 30 s segments.

    A segment is cached under the digest of its samples, so an upload rendered in windows
    encodes each segment once, and a long stream re-encodes only its newest segment. The
    growing last segment of a stream (`final` False) is not cached: it never recurs.
    """

    def __init__(self, extractor: Any, encoder: torch.nn.Module, device: torch.device, cache_segments: int = 4) -> None:
        self.extractor = extractor
        self.encoder = encoder
        self.device = device
        config: Any = encoder.config  # the WhisperConfig of a transformers module
        self.layers: int = config.encoder_layers + 1
        self.dim: int = config.d_model
        self._cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._cache_segments = cache_segments

    def _encode(self, segments: list[np.ndarray]) -> list[torch.Tensor]:
        mel = self.extractor(
            segments, sampling_rate=MODEL_RATE, return_tensors="pt", device=str(self.device)
        ).input_features
        dtype = next(self.encoder.parameters()).dtype
        out = self.encoder(mel.to(self.device, dtype), output_hidden_states=True)
        stacked = torch.stack(out.hidden_states, dim=2).float()  # [S, 1500, L, D]
        return [states.clone() for states in stacked.unbind(0)]  # each freed on its own

    @torch.inference_mode()
    def hidden_states(self, audio: np.ndarray, final: bool = True) -> torch.Tensor:
        """[floor(seconds × 50), L, D] float32 rows of `audio` (16 kHz mono float32)."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        rows = len(audio) // SAMPLES_PER_ROW
        if rows == 0:
            return torch.zeros(0, self.layers, self.dim, device=self.device)
        segments = [audio[i : i + SEGMENT_SAMPLES] for i in range(0, len(audio), SEGMENT_SAMPLES)]
        keys = [hashlib.blake2b(s.tobytes(), digest_size=16).digest() for s in segments]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        fresh = dict(zip(todo, self._encode([segments[i] for i in todo]), strict=True)) if todo else {}
        parts = []
        for i, key in enumerate(keys):
            if i in fresh:
                parts.append(fresh[i])
                if final or len(segments[i]) == SEGMENT_SAMPLES:
                    self._cache[key] = fresh[i]
            else:
                self._cache.move_to_end(key)
                parts.append(self._cache[key])
        while len(self._cache) > max(self._cache_segments, len(keys)):
            self._cache.popitem(last=False)
        return torch.cat(parts, dim=0)[:rows]

    def windows(self, audio: np.ndarray, first: int, count: int, final: bool = True) -> torch.Tensor:
        """[count, 10 × L, D] float32 audio tokens of frames first … first+count-1."""
        return frame_windows(self.hidden_states(audio, final), first, count)
