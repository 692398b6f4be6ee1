"""The media units every layer agrees on (MuseTalk's rates)."""

FPS = 25
"""Video frames per second; one unit = one video frame + the audio that plays during it."""
OUT_RATE = 48_000
"""Audio sent to viewers: 48 kHz mono, in 20 ms frames."""
OUT_SAMPLES_PER_UNIT = OUT_RATE // FPS  # 1920
OUT_SAMPLES_PER_PACKET = OUT_RATE // 50  # 960: 20 ms
MODEL_RATE = 16_000
"""Audio the renderers see: 16 kHz mono float32 in [-1, 1]."""
MODEL_SAMPLES_PER_UNIT = MODEL_RATE // FPS  # 640
CROP_SIZE = 256
"""Renderers output square face crops of this size."""
VIDEO_CLOCK = 90_000
"""RTP clock of video; a unit lasts VIDEO_CLOCK // FPS = 3600 ticks."""
