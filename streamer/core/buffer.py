"""A growable 1-D sample buffer: appends in amortised O(1), unlike repeated concatenation."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class Samples:
    def __init__(self, dtype: npt.DTypeLike = np.float32) -> None:
        self._data: np.ndarray = np.zeros(1024, dtype)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, samples: np.ndarray) -> None:
        need = self._size + len(samples)
        if need > len(self._data):
            grown = np.zeros(max(need, 2 * len(self._data)), self._data.dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : need] = samples
        self._size = need

    def pad_to(self, length: int) -> None:
        if length > self._size:
            self.append(np.zeros(length - self._size, self._data.dtype))

    @property
    def view(self) -> np.ndarray:
        """The samples so far (a view: valid until the next append)."""
        return self._data[: self._size]
