"""Build the shipped sample templates from redistributable material.

    python templates/make_samples.py

- astronaut.png: scikit-image's public-domain NASA astronaut photo (Eileen Collins), 512×512.
- astronaut_loop.mp4: a 4 s seamless 25 fps loop made from that photo with a slow, periodic
  head sway (rotation about the neck, small drift and zoom) and one blink.
- welcome.wav: the welcome line spoken by espeak-ng, 16 kHz mono.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import wave
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from skimage import data

HERE = Path(__file__).resolve().parent
FPS = 25
LOOP_FRAMES = 4 * FPS
WELCOME = "Hello! I am your digital human. Type a message, or send me audio, and I will say it."
NECK = (225.0, 235.0)
"""Pivot of the head sway, roughly the base of the astronaut's neck (x, y)."""
EYES = ((202, 101), (246, 103))
"""Approximate eye centres (x, y) in the 512×512 photo, for the blink."""


def photo() -> np.ndarray:
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def _blink(img: np.ndarray, closed: float) -> np.ndarray:
    """Close the eyes by `closed` (0..1): cover each eye with the lid skin just above it."""
    if closed <= 0:
        return img
    out = img.astype(np.float32)
    rx, ry = 13, 6
    for cx, cy in EYES:
        x0, x1, y0, y1 = cx - rx - 3, cx + rx + 4, cy - ry - 3, cy + ry + 4
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        skin = out[y0 : y0 + 2, x0:x1].mean(axis=0, keepdims=True)  # lid skin above the eye
        lid = np.repeat(skin, y1 - y0, axis=0)
        lash = np.exp(-(((ys - cy - 2) / 1.2) ** 2)) * np.clip(1 - ((xs - cx) / rx) ** 2, 0, 1)
        lid = lid * (1 - 0.45 * lash[..., None])  # the closed lid's lash line
        inside = np.clip(1 - ((xs - cx) / rx) ** 2 - ((ys - cy) / ry) ** 2, 0, 1)
        weight = cv2.GaussianBlur(np.sqrt(inside), (0, 0), 1.2)[..., None] * closed
        out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1 - weight) + lid * weight
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def loop_frames(img: np.ndarray) -> list[np.ndarray]:
    frames = []
    for i in range(LOOP_FRAMES):
        phase = 2 * np.pi * i / LOOP_FRAMES
        angle = 1.6 * np.sin(phase)  # degrees
        scale = 1.0 + 0.012 * np.sin(2 * phase + 0.7)
        dx, dy = 2.5 * np.sin(phase + 0.9), 1.5 * np.sin(2 * phase)
        m = cv2.getRotationMatrix2D(NECK, angle, scale)
        m[:, 2] += (dx, dy)
        closed = max(0.0, 1 - abs(i - 62) / 3.0)  # a 7-frame blink around frame 62
        src = _blink(img, closed)
        frames.append(cv2.warpAffine(src, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC,
                                     borderMode=cv2.BORDER_REFLECT101))
    return frames


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, FPS)
        stream.options = {"crf": "23", "preset": "slow"}
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="bgr24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_welcome(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(raw), WELCOME], check=True)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
        chunks = []
        with av.open(str(raw)) as src:
            for frame in src.decode(audio=0):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    pcm = np.concatenate(chunks).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(pcm.tobytes())


def main() -> None:
    img = photo()
    cv2.imwrite(str(HERE / "astronaut.png"), img)
    write_video(HERE / "astronaut_loop.mp4", loop_frames(img))
    write_welcome(HERE / "welcome.wav")
    sidecar = {"welcome_text": WELCOME, "welcome_audio": "welcome.wav"}
    for stem, name in (("astronaut", "Astronaut (photo)"), ("astronaut_loop", "Astronaut (video)")):
        (HERE / f"{stem}.json").write_text(json.dumps({"name": name, **sidecar}, indent=2) + "\n")


if __name__ == "__main__":
    main()
