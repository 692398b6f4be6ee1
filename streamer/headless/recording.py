"""Writes what a headless viewer received to an mp4 (H.264 + AAC), timed by arrival."""

from __future__ import annotations

import fractions
from pathlib import Path
from typing import Any

import av


class Recorder:
    """Writes the received stream to an mp4 (H.264 + AAC), timed by arrival."""

    def __init__(self, path: Path) -> None:
        self._container = av.open(str(path), "w")
        self._video: Any = None
        self._audio = self._container.add_stream("aac", rate=48000, layout="mono")
        self._t0: float | None = None
        self._last_pts: int | None = None

    def video(self, frame: av.VideoFrame, at: float) -> None:
        if self._video is None:
            self._video = self._container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
            self._video.width, self._video.height, self._video.pix_fmt = frame.width, frame.height, "yuv420p"
        self._t0 = at if self._t0 is None else self._t0
        out = frame.reformat(format="yuv420p")
        pts = round((at - self._t0) * 25)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        out.pts = pts
        out.time_base = fractions.Fraction(1, 25)
        for packet in self._video.encode(out):
            self._container.mux(packet)

    def audio(self, frame: av.AudioFrame) -> None:
        if self._t0 is None:
            return
        frame.pts = None
        for packet in self._audio.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for stream in (self._video, self._audio):
            if stream is not None:
                for packet in stream.encode(None):
                    self._container.mux(packet)
        self._container.close()
