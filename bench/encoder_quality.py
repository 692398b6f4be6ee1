"""What a viewer of bench/encoder.py's streams sees: the bitrate sent, and PSNR and SSIM of the
decoded luma against the source frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import av
import cv2
import numpy as np
from aiortc.codecs.base import Encoder

from streamer.units import FPS
from streamer.video.yuv import planes


def luma_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two luma planes (gaussian 11×11, sigma 1.5, as Wang et al.)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float((((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))).mean())


def quality(make: Callable[[], Encoder], frames: list[av.VideoFrame]) -> dict[str, Any]:
    """Bitrate sent and PSNR / SSIM (luma) of the decoded stream against its source frames."""
    encoder = make()
    encoder.encode(frames[0], True)  # opens the encoder's own codec context
    context = encoder.codec
    decoder = av.CodecContext.create(
        "h264" if "264" in context.name else "libvpx" if context.name == "libvpx" else "vp8", "r"
    )
    sent, psnr, ssim, decoded = 0, [], [], []
    for k, frame in enumerate(frames):
        frame.pict_type = av.video.frame.PictureType.I if k == 0 else av.video.frame.PictureType.NONE
        for packet in context.encode(frame):
            sent += packet.size
            decoded += decoder.decode(packet)
    frame.pict_type = av.video.frame.PictureType.NONE
    for packet in context.encode(None):
        sent += packet.size
        decoded += decoder.decode(packet)
    for source, out in zip(frames, decoded, strict=False):
        a, b = planes(source.to_ndarray())[0], planes(out.to_ndarray())[0]
        mse = float(np.mean((a.astype(np.float64) - b) ** 2))
        psnr.append(99.0 if mse == 0 else 10 * np.log10(255**2 / mse))
        ssim.append(luma_ssim(a, b))
    return {
        "sent_kbit_s": round(sent * 8 * FPS / len(frames) / 1000, 1),
        "psnr_y_db": round(float(np.mean(psnr)), 2) if psnr else None,
        "ssim_y": round(float(np.mean(ssim)), 4) if ssim else None,
        "frames_decoded": len(decoded),
    }
